"""Reward-weighted likelihood for diffusion (``rwl``; Lee et al. 2023, arXiv 2302.12192).

The loss: ``E_x[w(x) L_denoise(x)] + beta E_pre[L_denoise]`` over the model's own samples ``x``, weighted
by a reward model learned from good/bad labels, plus the pre-training loss on real digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.trainer import OnlineDiffusionTrainer, Trajectories, mean_or_nan
from hfrl.data import load_embedded_mnist
from hfrl.diffusion import matching_loss, random_timesteps, to_model_space
from hfrl.errors import ConfigError
from hfrl.feedback import SINGLE


@dataclass
class RWLDiffusionConfig(OnlineDiffusionConfig):
    """Reward-weighted likelihood for diffusion (Lee et al. 2023, arXiv 2302.12192)."""

    lr: float = 1e-4
    """AdamW learning rate (> 0). The shared default, a higher one, did not help RWL: its success rate
    fell back later in the run (``scripts/bench_hero.py --methods rwl``, ``bench-results/hero.md``)."""
    rwl_steps: int = 16
    """Gradient steps per round on the generated samples so far."""
    rwl_batch_size: int = 32
    """Generated samples per step (and as many pre-training images)."""
    beta: float = 0.2
    """Weight of the pre-training loss (denoising real digits of every class), Lee et al.'s ``beta`` (>= 0).
    Higher values keep the base model's skill but slow learning: Lee et al.'s ``beta = 1`` with ``reward``
    weighting barely moved the success rate here (``scripts/bench_hero.py --methods rwl``)."""
    weighting: str = "filter"
    """``reward``: the reward model's probability of good (Lee et al.); ``filter``: 1 above 0.5, else 0
    (the mass of bad samples at ``P(good) ~ 0.2`` otherwise dilutes the few good ones)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rwl_steps < 1 or self.rwl_batch_size < 1 or self.beta < 0:
            raise ConfigError("rwl_steps and rwl_batch_size must be >= 1 and beta >= 0")
        if self.weighting not in ("reward", "filter"):
            raise ConfigError(f"weighting must be 'reward' or 'filter', got {self.weighting!r}")


class RWLDiffusionTrainer(BinaryRewardMixin, OnlineDiffusionTrainer):
    """Reward-weighted denoising on the model's own samples plus ``beta`` x the pre-training loss.

    Lee et al. minimise ``E_x[r(x) L_denoise(x)] + beta E_pre[L_denoise]`` over generated samples ``x``
    scored by a reward model learned from human labels; ``L_denoise`` is the DDPM loss (Ho et al. eq. 14)
    and the pre-training data are the real digits the base model learned from. Online here: the reward
    model is retrained on all labels each round and re-scores every sample generated so far.
    """

    name = "rwl"
    feedback_kind = SINGLE
    config_class = RWLDiffusionConfig
    config: RWLDiffusionConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()
        self.generated: list[torch.Tensor] = []
        self.pretrain = load_embedded_mnist().images

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The label pool and reward model, and every sample generated so far (the weighted data)."""
        tensors, values = super().extra_state()
        if self.generated:
            tensors["rwl.generated"] = torch.cat(self.generated)
        return tensors, values

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        super().load_extra_state(tensors, values)
        self.generated = [tensors["rwl.generated"]] if "rwl.generated" in tensors else []

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        self.pool.add(traj.images, feedback.labels)
        self.generated.append(traj.images)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        pool = torch.cat(self.generated)  # (M, 1, H, W) in [0, 1]
        r = self.reward(pool)
        weights = (r > 0.5).float() if cfg.weighting == "filter" else r
        losses, pre_losses = [], []

        def denoise_loss(x0: torch.Tensor) -> torch.Tensor:
            # The model's own training loss: noise prediction (DDPM) or velocity matching (flow).
            t = random_timesteps(self.model, x0.shape[0], self.rng).to(self.device)
            noise = torch.randn(x0.shape, generator=self.rng).to(self.device)
            return matching_loss(self.model, x0, t, noise)  # (B,)

        for _ in range(cfg.rwl_steps):
            idx = torch.randint(0, pool.shape[0], (cfg.rwl_batch_size,), generator=self.rng)
            pre_idx = torch.randint(0, self.pretrain.shape[0], (cfg.rwl_batch_size,), generator=self.rng)

            def loss_fn(idx: torch.Tensor = idx, pre_idx: torch.Tensor = pre_idx) -> torch.Tensor:
                gen_loss = (
                    weights[idx.to(self.device)] * denoise_loss(to_model_space(pool[idx].to(self.device)))
                ).mean()
                loss = gen_loss
                if cfg.beta > 0:
                    pre = denoise_loss(to_model_space(self.pretrain[pre_idx].to(self.device))).mean()
                    loss = loss + cfg.beta * pre
                    pre_losses.append(float(pre.detach()))
                loss.backward()
                losses.append(float(gen_loss.detach()))
                return loss

            self.optimize(loss_fn)
        return metrics | {
            "losses/weighted": mean_or_nan(losses), "losses/pretrain": mean_or_nan(pre_losses),
            "reward/mean": float(r.mean()), "reward/batch_mean": float(self.reward(traj.images).mean()),
        }  # fmt: skip


__all__ = ["RWLDiffusionConfig", "RWLDiffusionTrainer"]
