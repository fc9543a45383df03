"""D3PO (``d3po``): DPO on each step of the reverse chain from pair comparisons, no reward model.

Yang et al. 2024, arXiv 2311.13231.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.trainer import OnlineDiffusionTrainer, Trajectories, mean_or_nan
from hfrl.errors import ConfigError
from hfrl.feedback import LEFT, PAIR, RIGHT


@dataclass
class D3POConfig(OnlineDiffusionConfig):
    """D3PO-style preference fine-tuning: pairs of samples, no reward model."""

    lr: float = 1e-4
    """AdamW learning rate (> 0). The shared default, a higher one, learnt faster on some seeds but
    collapsed on others (once a round's pairs held no target digit, every answer was a tie); this rate rose
    on every seed. LoRA adapters gave no robust gain over full fine-tuning and collapsed at HERO's rate, so
    full fine-tuning stays. Chosen with ``scripts/bench_hero.py --methods d3po`` (``bench-results/hero.md``
    and the README's HERO table)."""
    beta: float = 0.1
    """DPO temperature on the per-step log-ratios."""


class D3POTrainer(OnlineDiffusionTrainer):
    """DPO on each step of the reverse chain (D3PO, Yang et al. 2024, arXiv 2311.13231).

    Each round's batch is split into pairs (samples ``2i`` and ``2i + 1``), one comparison per pair. For a
    preferred chain ``w`` and a rejected chain ``l`` the loss at every step is
    ``-log sigmoid(beta [log pi(w_t) / pi_old(w_t) - log pi(l_t) / pi_old(l_t)])`` with the sampling model as
    reference and each log-ratio clipped to the PPO range (as D3PO's code does); ties are skipped.
    """

    name = "d3po"
    feedback_kind = PAIR
    config_class = D3POConfig
    config: D3POConfig

    def collect(self, traj: Trajectories) -> tuple[Any, dict[str, Any]]:  # noqa: D102
        half = len(traj) // 2
        if half == 0:
            raise ConfigError("d3po needs batch_size >= 2 (samples are compared in pairs)")
        left, right = traj.images[0 : 2 * half : 2], traj.images[1 : 2 * half : 2]
        result = self.ask(PAIR, left, right)
        words = result.labels
        good = torch.zeros(len(traj), dtype=torch.bool)
        for i, w in enumerate(words):
            if w == LEFT:
                good[2 * i] = True
            elif w == RIGHT:
                good[2 * i + 1] = True
        decided = sum(w in (LEFT, RIGHT) for w in words)
        return words, {"good": good, "best": None, "good_rate": decided / max(1, len(words))}

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        winners, losers = [], []
        for i, w in enumerate(feedback):
            if w == LEFT:
                winners.append(2 * i)
                losers.append(2 * i + 1)
            elif w == RIGHT:
                winners.append(2 * i + 1)
                losers.append(2 * i)
        if not winners:
            return {"losses/dpo": float("nan"), "charts/pairs": 0.0}
        win = torch.tensor(winners, device=self.device)
        lose = torch.tensor(losers, device=self.device)
        steps = self.trained_steps()
        n_steps = len(steps)
        lo, hi = math.log(1 - cfg.clip_range), math.log(1 + cfg.clip_range)
        losses: list[float] = []
        accs: list[float] = []
        for _ in range(cfg.policy_epochs):
            perm = torch.randperm(win.numel(), generator=self.rng).to(self.device)
            for sel in perm.split(max(1, cfg.minibatch_size // 2)):

                def loss_fn(sel: torch.Tensor = sel) -> torch.Tensor:
                    w, lo_idx = win[sel], lose[sel]
                    both = torch.cat([w, lo_idx])
                    total = torch.zeros((), device=self.device)
                    for j in steps:
                        t = int(traj.timesteps[j])
                        logp, _, _ = self.step_log_prob(
                            self.model, traj.states[j, both], t, traj.actions[j, both]
                        )
                        log_ratio = (logp - traj.log_probs[j, both]).clamp(lo, hi)
                        margin = log_ratio[: w.numel()] - log_ratio[w.numel() :]
                        loss = -F.logsigmoid(cfg.beta * margin).mean()
                        (loss / n_steps).backward()
                        total = total + loss.detach() / n_steps
                        accs.append(float((margin > 0).float().mean()))
                    losses.append(float(total))
                    return total

                self.optimize(loss_fn)
        return {
            "losses/dpo": mean_or_nan(losses),
            "charts/pairs": float(win.numel()),
            "charts/margin_positive": mean_or_nan(accs),
        }


__all__ = ["D3POConfig", "D3POTrainer"]
