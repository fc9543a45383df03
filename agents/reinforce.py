"""REINFORCE with a batch-mean baseline on the one-step denoising environment (Williams, 1992)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hfrl.agents.base import Trainer
from hfrl.agents.config import TrainerConfig


@dataclass
class ReinforceConfig(TrainerConfig):
    """REINFORCE settings."""

    normalize_advantages: bool = True
    """Divide advantages by their standard deviation (after subtracting the batch mean)."""


def advantages(reward: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """One-step advantages ``r - mean(r)`` (optionally ``/ std(r)``), ``(N,)``.

    An episode is one step, so the return is the reward and the batch mean is the baseline (as in DDPO,
    Black et al. 2023, which normalises per prompt; here every observation is its own prompt).
    """
    adv = reward - reward.mean()
    if normalize and reward.numel() > 1:
        adv = adv / (reward.std() + 1e-8)
    return adv


class ReinforceTrainer(Trainer):
    """Policy gradient: ``-E[A(x, a) log pi(a|x)]`` plus the shared regularisers."""

    name = "reinforce"
    config_class = ReinforceConfig
    config: ReinforceConfig

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        actions, reward = self.act(noisy)
        adv = advantages(reward, self.config.normalize_advantages)
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
