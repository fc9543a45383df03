"""Direct reward gradient: backpropagate a frozen reward model through the generator (the seed paper).

The seed paper (arXiv 2308.00307) fine-tunes the denoiser by gradient ascent on a learned reward model's
score of its output, with a consistency term to the initial generator against catastrophic forgetting.
There is no sampling: the policy's mean (the generator's output) is what is scored.
"""

from __future__ import annotations

from torch import nn

from hfrl.agents.base import Trainer
from hfrl.agents.config import RewardGradConfig
from hfrl.errors import ConfigError


class RewardGradTrainer(Trainer):
    """Maximise ``r(x, g(x))`` by its gradient; the reward model's parameters never change.

    The reward is differentiated in eval mode (dropout off, as when the environment scores), whatever
    mode it arrives in; its mode is left as it was.
    """

    name = "reward-grad"
    config_class = RewardGradConfig

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if not isinstance(self.reward, nn.Module) or getattr(self.reward, "uses_clean", False):
            raise ConfigError(
                "reward-grad needs a differentiable reward model (an nn.Module checkpoint), not "
                f"{type(self.reward).__name__}"
            )

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        output = self.policy.mode(noisy)  # (N, C, H, W), differentiable
        # Scored in eval mode, as the environment scores (a CNN reward's dropout would make the gradient a
        # random draw); the reward's own mode is put back afterwards.
        was_training = self.reward.training
        self.reward.eval()
        try:
            score = self.reward(noisy, output)  # (N,), gradients flow into the generator only
        finally:
            self.reward.train(was_training)
        reg, metrics = self.regularizers(noisy)
        loss = -score.mean() + reg
        grad_norm = self.optimize(loss, "reward-gradient loss")
        return {
            "losses/reward": -score.mean().item(),
            **metrics,
            "reward/mean": score.mean().item(),
            "reward/std": score.std().item(),
            "charts/grad_norm": grad_norm,
        }
