"""PPO-clip with a KL penalty to the pretrained policy (Schulman et al. 2017; DPOK, Fan et al. 2023)."""

from __future__ import annotations

from typing import Any

import torch

from hfrl.agents.base import Trainer
from hfrl.agents.config import PPOConfig
from hfrl.agents.reinforce import advantages


class PPOTrainer(Trainer):
    """PPO-clip on the one-step environment, with the closed-form KL to the reference as a penalty.

    With one-step episodes there is no value function to learn: the advantage is the reward minus a
    baseline, normalised (:func:`~hfrl.agents.reinforce.advantages`). By default each input gets
    ``group_size = 8`` actions and each is compared with the mean of the other 7 (the leave-one-out
    baseline of RLOO); ``group_size = 1`` gives DDPO's batch-mean baseline (Black et al. 2023).
    """

    name = "ppo"
    config_class = PPOConfig
    config: PPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kl_coef = float(self.config.kl)

    def update(self) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        noisy = self.observe()
        actions, reward = self.act(noisy)
        adv = advantages(reward, group_size=cfg.group_size)
        with torch.no_grad():
            old_logp = self.policy.log_prob(noisy, actions)
        n = noisy.shape[0]
        clip_fracs, approx_kls, losses = [], [], []
        metrics: dict[str, float] = {}
        stopped_early = 0.0
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=self.rng).to(noisy.device)
            for idx in perm.split(cfg.minibatch_size):
                logp = self.policy.log_prob(noisy[idx], actions[idx])
                log_ratio = logp - old_logp[idx]
                ratio = log_ratio.exp()
                unclipped = -adv[idx] * ratio
                clipped = -adv[idx] * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                pg_loss = torch.max(unclipped, clipped).mean()
                reg, metrics = self._regularizers(noisy[idx])
                self.optimize(pg_loss + reg, "PPO loss")
                with torch.no_grad():
                    # k3 estimator of KL(pi_old || pi) (Schulman, "Approximating KL divergence", 2020)
                    approx_kls.append(float(((ratio - 1) - log_ratio).mean()))
                    clip_fracs.append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                losses.append(pg_loss.item())
            if cfg.target_kl is not None and approx_kls[-1] > cfg.target_kl:
                stopped_early = 1.0
                break
        if cfg.adaptive_kl:
            with torch.no_grad():
                kl_ref = float(self.policy.kl(self.reference, noisy).mean())
            self.kl_coef *= (
                2.0 if kl_ref > 1.5 * cfg.kl_target else 0.5 if kl_ref < cfg.kl_target / 1.5 else 1.0
            )
        return {
            "losses/policy": sum(losses) / len(losses),
            **metrics,
            "reward/mean": float(reward.mean()),
            "reward/std": float(reward.std()),
            "charts/approx_kl": sum(approx_kls) / len(approx_kls),
            "charts/clip_fraction": sum(clip_fracs) / len(clip_fracs),
            "charts/early_stop": stopped_early,
            "charts/kl_coef": self.kl_coef,
        }

    def _regularizers(self, noisy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        # The adaptive coefficient replaces config.kl in the shared regulariser.
        reg, metrics = self.regularizers(noisy)
        if self.kl_coef != self.config.kl:
            kl = self.policy.kl(self.reference, noisy).mean()
            reg = reg + (self.kl_coef - self.config.kl) * kl
        return reg, metrics

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:  # noqa: D102
        return {}, {"kl_coef": self.kl_coef}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: D102
        self.kl_coef = float(values.get("kl_coef", self.config.kl))
