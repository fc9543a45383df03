"""REINFORCE on the one-step denoising environment (Williams, 1992), with a leave-one-out baseline.

By default each noisy input gets ``group_size = 8`` actions, and each action's reward is compared with the
mean of the other 7 for the same input (RLOO, Ahmadian et al. 2024); ``group_size = 1`` gives the
batch-mean baseline.
"""

from __future__ import annotations

import torch

from hfrl.agents.base import Trainer
from hfrl.agents.config import ReinforceConfig


def advantages(reward: torch.Tensor, normalize: bool = True, group_size: int = 1) -> torch.Tensor:
    """One-step advantages: the reward minus a baseline (optionally divided by the std), ``(N,)``.

    An episode is one step, so the return is the reward. With ``group_size = 1`` the baseline is the batch
    mean (as in DDPO, Black et al. 2023); with ``K > 1`` consecutive runs of ``K`` rewards answer the same
    input and each is compared with the mean of the *other* ``K - 1`` in its group (the leave-one-out
    baseline of RLOO, Ahmadian et al. 2024), so the advantage says which action was better for that input
    rather than which input was easier.

    Args:
        reward: ``(N,)`` rewards; ``N`` a multiple of ``group_size``.
        normalize: Divide by the standard deviation of the advantages (default True).
        group_size: ``K``, actions per input (default 1).
    """
    if group_size > 1:
        groups = reward.view(-1, group_size)
        baseline = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
        adv = (groups - baseline).reshape(-1)
    else:
        adv = reward - reward.mean()
    if normalize and reward.numel() > 1:
        adv = adv / (adv.std() + 1e-8)
    return adv


class ReinforceTrainer(Trainer):
    """Policy gradient: ``-E[A(x, a) log pi(a|x)]`` plus the shared regularisers."""

    name = "reinforce"
    config_class = ReinforceConfig
    config: ReinforceConfig

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        actions, reward = self.act(noisy)
        adv = advantages(reward, self.config.normalize_advantages, self.config.group_size)
        logp = self.policy.log_prob(noisy, actions)  # (N,)
        pg_loss = -(adv * logp).mean()
        reg, metrics = self.regularizers(noisy)
        grad_norm = self.optimize(pg_loss + reg)
        return {
            "losses/policy": pg_loss.item(),
            **metrics,
            "reward/mean": float(reward.mean()),
            "reward/std": float(reward.std()),
            "charts/grad_norm": grad_norm,
            "charts/log_std": self.policy.log_std.item(),
        }
