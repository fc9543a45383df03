"""Advantage Weighted Matching (``awm``): the pre-training loss, weighted by each sample's advantage.

Xue et al. 2025, arXiv 2509.25050. DDPO's per-step likelihood is score matching with noisy targets; AWM
keeps the pre-training objective instead and replaces the sample's log-likelihood in the policy gradient
by minus its matching loss (:func:`~hfrl.diffusion.matching_loss`) on noised copies of the
finished sample at random times:

    L = mean_i( -A_i * (-matching_loss_i) ) + kl * mean_i ||v_theta(x_t, t) - v_ref(x_t, t)||^2

so a sample with a positive advantage is matched more closely (its likelihood rises) and one with a
negative advantage less. ``A`` normalises the learned reward (from every good/bad label so far) over the
round's batch and is clipped to ``[-adv_clip_max, adv_clip_max]``; the regulariser is the paper's KL on the
model outputs to the base model (its "uniform" weighting). The paper's PPO ratio of matching losses is
1 on the first step of a round, where this is its gradient; here every step of a round is taken on the
round's samples with that gradient, without the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.ppo import normalised
from hfrl.agents.diffusion.trainer import OnlineDiffusionTrainer, Trajectories, mean_or_nan
from hfrl.diffusion import matching_input, random_timesteps, to_model_space
from hfrl.errors import ConfigError
from hfrl.feedback import SINGLE


@dataclass
class AWMConfig(OnlineDiffusionConfig):
    """Advantage Weighted Matching: the matching loss weighted by the learned reward's advantages."""

    kl: float = 0.1
    """Weight of ``||v_theta - v_ref||^2`` (per pixel) to the base model (the paper's ``beta``)."""
    adv_clip_max: float = 5.0
    """Advantages are clipped to ``[-adv_clip_max, adv_clip_max]``."""
    extra_samples: int = 0
    """Unlabelled samples per round, scored by the reward model alone and trained on."""
    awm_steps: int = 16
    """Gradient steps per round on the round's samples."""
    awm_batch_size: int = 32
    """Samples per gradient step."""
    awm_timesteps: int = 2
    """Noised copies of each sample per step, each at its own random time (the paper's ``train_timesteps``)."""
    lr: float = 1e-4
    """AdamW learning rate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.adv_clip_max > 0 or self.extra_samples < 0:
            raise ConfigError(
                f"adv_clip_max must be > 0 and extra_samples >= 0, got {self.adv_clip_max}, {self.extra_samples}"
            )
        if self.awm_steps < 1 or self.awm_batch_size < 1 or self.awm_timesteps < 1:
            raise ConfigError("awm_steps, awm_batch_size and awm_timesteps must be >= 1")


def awm_loss(matching: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """AWM's policy loss ``mean(-A * log p)`` with ``log p = -matching_loss``.

    Args:
        matching: ``(B,)`` per-sample matching losses (with gradient).
        advantages: ``(B,)`` advantages (no gradient).
    """
    return (-advantages.detach() * -matching).mean()


class AWMTrainer(BinaryRewardMixin, OnlineDiffusionTrainer):
    """Advantage Weighted Matching (arXiv 2509.25050) against a learned good/bad reward model."""

    name = "awm"
    feedback_kind = SINGLE
    config_class = AWMConfig
    config: AWMConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()

    def train_on(self, images: torch.Tensor, advantages: torch.Tensor) -> dict[str, float]:
        """``awm_steps`` gradient steps of :func:`awm_loss` (+ the KL) on ``images`` ``(M, C, H, W)`` in ``[0, 1]``."""
        cfg = self.config
        x0 = to_model_space(images.to(self.device))
        adv = advantages.to(self.device).float()
        losses, kls, matched = [], [], []
        n = cfg.awm_timesteps
        for _ in range(cfg.awm_steps):
            idx = torch.randint(0, x0.shape[0], (min(cfg.awm_batch_size, x0.shape[0]),), generator=self.rng)
            idx = idx.repeat(n).to(self.device)  # n noised copies of each
            t = random_timesteps(self.model, idx.numel(), self.rng)
            noise = torch.randn((idx.numel(), *x0.shape[1:]), generator=self.rng).to(self.device)

            def loss_fn(
                idx: torch.Tensor = idx, t: torch.Tensor = t, noise: torch.Tensor = noise
            ) -> torch.Tensor:
                x_t, target = matching_input(self.model, x0[idx], t, noise)
                tt = t.to(self.device)
                pred = self.model(x_t, tt)
                matching = ((pred - target) ** 2).flatten(1).mean(1)  # matching_loss, its output kept
                loss = awm_loss(matching, adv[idx])
                losses.append(float(loss.detach()))
                matched.append(float(matching.detach().mean()))
                if cfg.kl > 0:
                    kl = ((pred - self.reference_output(x_t, tt)) ** 2).flatten(1).mean(1).mean()
                    kls.append(float(kl.detach()))
                    loss = loss + cfg.kl * kl
                loss.backward()
                return loss

            self.optimize(loss_fn)
        out = {"losses/awm": mean_or_nan(losses), "losses/matching": mean_or_nan(matched)}
        if kls:
            out["charts/kl_ref"] = mean_or_nan(kls)
        return out

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        self.pool.add(traj.images, feedback.labels)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        images = traj.images
        if cfg.extra_samples:
            images = torch.cat([images, self.rollout(self.initial_noise(cfg.extra_samples)).images])
        scores = self.reward(images).float().cpu()
        adv = normalised(scores).clamp(-cfg.adv_clip_max, cfg.adv_clip_max)
        return (
            metrics
            | self.train_on(images, adv)
            | {"reward/mean": float(scores.mean()), "reward/std": float(scores.std())}
        )


__all__ = ["AWMConfig", "AWMTrainer", "awm_loss"]
