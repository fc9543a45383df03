"""Reward-weighted likelihood (Lee et al. 2023, arXiv 2302.12192), and its filtered variant.

Lee et al. fine-tune a text-to-image model by minimising ``E[-r(x, a) log p(a | x)] + beta * L_pre``
over generated samples scored by a reward model, with the pre-training loss keeping the model close to
what it could do. For a Gaussian policy ``-log pi(a|x)`` is a scaled squared error to the policy's mean,
so this is reward-weighted regression (Peters & Schaal 2007) of the generator onto its own good samples;
``beta`` is this library's ``aux`` weight (the pre-training loss is supervised source-domain denoising).

Samples are collected in rounds: every ``round_steps`` updates, ``dataset_size`` samples are drawn — each
of ``dataset_size / group_size`` noisy target images gets ``group_size`` outputs from the current policy
(8 by default, so the ``exp`` weighting can rank the outputs for one input) — and the reward scores them
once. ``round_steps = steps`` gives Lee et al.'s offline recipe (one dataset from the pretrained model).
"""

from __future__ import annotations

from typing import Any

import torch

from hfrl.agents.base import Trainer
from hfrl.agents.config import WEIGHTINGS as WEIGHTINGS  # re-exported: the weightings RWLConfig accepts
from hfrl.agents.config import RWLConfig


def sample_weights(
    reward: torch.Tensor, weighting: str, threshold: float, temperature: float, group_size: int = 1
) -> torch.Tensor:
    """Per-sample weights ``(N,)`` for reward-weighted likelihood (see :class:`RWLConfig`).

    With ``group_size = K > 1`` the ``exp`` weights are a softmax within each run of ``K`` samples of the
    same input (normalised to mean 1 per group), so they rank actions for an input, not inputs.
    """
    if weighting == "reward":
        return reward.clamp(min=0.0)
    if weighting == "filter":
        return (reward >= threshold).float()
    groups = reward.view(-1, group_size) if group_size > 1 else reward.view(1, -1)
    w = torch.softmax(groups / temperature, dim=1) * groups.shape[1]
    return w.reshape(-1)


class RWLTrainer(Trainer):
    """Minimise ``-E[w(r) log pi(a|x)]`` (per pixel) plus the shared regularisers."""

    name = "rwl"
    config_class = RWLConfig
    config: RWLConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data: dict[str, torch.Tensor] | None = None

    def collect(self) -> dict[str, torch.Tensor]:
        """Sample ``dataset_size`` (noisy, action, reward) triples from the current policy."""
        chunks: dict[str, list[torch.Tensor]] = {"noisy": [], "action": [], "reward": []}
        remaining = self.config.dataset_size
        while remaining > 0:
            noisy = self.observe()
            actions, reward = self.act(noisy)
            k = self.config.group_size
            take = min(-(-remaining // k) * k, noisy.shape[0])  # whole groups only
            for key, value in (("noisy", noisy), ("action", actions), ("reward", reward)):
                chunks[key].append(value[:take])
            remaining -= take
        data = {k: torch.cat(v) for k, v in chunks.items()}
        data["weight"] = sample_weights(
            data["reward"],
            self.config.weighting,
            self.config.threshold,
            self.config.temperature,
            self.config.group_size,
        )
        return data

    def update(self) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        new_round = self.data is None or self.step % cfg.round_steps == 0
        if new_round:
            self.data = self.collect()
        assert self.data is not None
        idx = torch.randint(len(self.data["reward"]), (cfg.batch_size,), generator=self.rng).to(self.device)
        noisy, actions, weight = self.data["noisy"][idx], self.data["action"][idx], self.data["weight"][idx]
        pixels = noisy[0].numel()
        # Per-pixel NLL: the summed log-density of a 784-pixel Gaussian is ~1e4 times larger, which would
        # only rescale the learning rate.
        nll = -self.policy.log_prob(noisy, actions) / pixels
        rwl_loss = (weight * nll).mean()
        reg, metrics = self.regularizers(noisy)
        grad_norm = self.optimize(rwl_loss + reg, "reward-weighted likelihood")
        out = {
            "losses/rwl": rwl_loss.item(),
            **metrics,
            "reward/mean": float(self.data["reward"].mean()),
            "reward/weight_mean": float(self.data["weight"].mean()),
            "charts/grad_norm": grad_norm,
        }
        if new_round:
            self.callbacks.on_round(out)
        return out

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:  # noqa: D102
        if self.data is None:
            return {}, {}
        return {f"data.{k}": v for k, v in self.data.items()}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: D102
        data = {k[5:]: v.to(self.device) for k, v in tensors.items() if k.startswith("data.")}
        self.data = data or None
