"""PPO on the reverse chain against a reward learned from the labels (DDPO, Black et al. 2023).

The update ``ddpo`` and ``hero`` share: every step of a sampled chain is an action whose log-probability
the scheduler gives, and PPO-clip (Schulman et al. 2017) raises the probability of the steps of chains the
learned reward scores above the batch's mean, with DPOK's per-step KL to the base model (Fan et al. 2023)
when ``kl > 0``. Each method supplies the reward; :meth:`LearnedRewardPPOTrainer.learned_reward_ppo` runs
``inner_rounds`` PPO updates on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.trainer import (
    OnlineDiffusionTrainer,
    Trajectories,
    concat_trajectories,
    mean_or_nan,
)
from hfrl.errors import ConfigError


def normalised(values: torch.Tensor, min_std: float = 0.0) -> torch.Tensor:
    """``(values - mean) / max(std, min_std)`` of a batch (zeros when all are equal)."""
    std = values.std() if values.numel() > 1 else torch.zeros(())
    if float(std) <= 1e-8:
        return torch.zeros_like(values)
    return (values - values.mean()) / std.clamp(min=min_std)


@dataclass
class LearnedRewardPPOConfig(OnlineDiffusionConfig):
    """What the methods that run PPO against a reward learned from the labels share (``ddpo``, ``hero``)."""

    extra_samples: int = 0
    """Unlabelled samples per round, drawn like the labelled ones, scored by the learned reward alone and
    added to the PPO batch (:meth:`LearnedRewardPPOTrainer.with_unlabelled`): more policy data per label,
    paid in sampling time."""

    min_reward_std: float = 0.0
    """Advantages are ``(r - mean) / max(std, min_reward_std)`` over the PPO batch. Once the policy has
    converged on what the reward likes, the rewards of a batch barely differ; a floor then keeps the
    update small instead of blowing the reward model's noise up to unit scale."""

    inner_rounds: int = 1
    """PPO updates per feedback round. The first is on the labelled batch plus ``extra_samples``; each
    further one on ``batch_size + extra_samples`` fresh chains from the updated model, scored by the learned
    reward alone (as RLHF runs many policy iterations per reward model). More learning per label, paid in
    sampling time and in trust in the reward."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.extra_samples < 0 or self.min_reward_std < 0:
            raise ConfigError(
                f"extra_samples and min_reward_std must be >= 0, got {self.extra_samples}, {self.min_reward_std}"
            )
        if self.inner_rounds < 1:
            raise ConfigError(f"inner_rounds must be >= 1, got {self.inner_rounds}")


class LearnedRewardPPOTrainer(OnlineDiffusionTrainer):
    """An online trainer whose update is PPO on the reverse chain against a learned reward.

    Subclasses train the reward from the round's feedback and call :meth:`learned_reward_ppo` with it.
    """

    config: LearnedRewardPPOConfig

    def with_unlabelled(self, traj: Trajectories, num: int) -> Trajectories:
        """``traj`` plus ``num`` more chains from :meth:`initial_noise`, for a reward model to score unlabelled.

        A learned reward generalises past the samples people marked; PPO on more samples per round costs
        sampling time, not labels.
        """
        return concat_trajectories(traj, self.rollout(self.initial_noise(num))) if num else traj

    def ppo_update(self, traj: Trajectories, advantages: torch.Tensor) -> dict[str, float]:
        """PPO-clip over the chain's steps (DDPO, Black et al. 2023), with the DPOK KL when ``kl > 0``.

        Args:
            traj: The round's chains.
            advantages: ``(B,)`` per-sample advantages (normalised rewards).
        """
        cfg = self.config
        batch = traj.log_probs.shape[1]
        steps = self.trained_steps()
        n_steps = len(steps)
        adv = advantages.to(self.device).float()
        clip_fracs: list[float] = []
        approx_kls: list[float] = []
        kls: list[float] = []
        losses: list[float] = []
        first_dev: list[float] = []
        limit = math.inf if cfg.target_kl is None else 1.5 * cfg.target_kl
        updates, stopped = 0, False

        def within_limit() -> bool:
            # approx_kls[-n_steps:] are this minibatch's steps, measured before its update
            return mean_or_nan(approx_kls[-n_steps:]) <= limit

        for _ in range(cfg.policy_epochs):
            if stopped:
                break
            perm = torch.randperm(batch, generator=self.rng).to(self.device)
            for idx in perm.split(cfg.minibatch_size):

                def loss_fn(idx: torch.Tensor = idx, first: bool = updates == 0) -> torch.Tensor:
                    total = torch.zeros((), device=self.device)
                    for j in steps:
                        t = int(traj.timesteps[j])
                        x, prev = traj.states[j, idx], traj.actions[j, idx]
                        logp, mean, std = self.step_log_prob(self.model, x, t, prev)
                        log_ratio = logp - traj.log_probs[j, idx]
                        ratio = log_ratio.exp()
                        a = adv[idx]
                        pg = torch.max(
                            -a * ratio, -a * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                        ).mean()
                        loss = pg
                        if cfg.kl > 0:
                            kl = self.kl_to_reference(x, t, mean, std).mean()
                            loss = loss + cfg.kl * kl
                            kls.append(float(kl.detach()))
                        (loss / n_steps).backward()
                        total = total + loss.detach() / n_steps
                        with torch.no_grad():
                            if first:  # the first minibatch, measured on the policy that sampled
                                first_dev.append(float((ratio - 1).abs().max()))
                            approx_kls.append(float(((ratio - 1) - log_ratio).mean()))
                            clip_fracs.append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                    losses.append(float(total))
                    return total

                if self.optimize(loss_fn, within_limit) is None:
                    stopped = True
                    break
                updates += 1
        out = {
            "losses/policy": mean_or_nan(losses),
            "charts/ppo_samples": float(batch),
            "charts/ppo_updates": float(updates),
            "charts/ppo_stopped": float(stopped),
            "charts/approx_kl": mean_or_nan(approx_kls),
            "charts/clip_fraction": mean_or_nan(clip_fracs),
            "charts/first_ratio_deviation": max(first_dev, default=float("nan")),
        }
        if kls:
            out["charts/kl_ref"] = mean_or_nan(kls)
        return out

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """``(B,)`` PPO advantages of a batch's learned rewards ``(B,)``.

        Normalised over the batch, with the ``min_reward_std`` floor (Flow-GRPO: within groups).
        """
        return normalised(rewards, self.config.min_reward_std)

    def learned_reward_ppo(
        self, traj: Trajectories, score: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, float]:
        """PPO against a learned reward: ``inner_rounds`` updates (:class:`LearnedRewardPPOConfig`).

        Args:
            traj: The round's labelled chains (``extra_samples`` unlabelled ones are added).
            score: Learned reward of images ``(N, 1, H, W)`` -> ``(N,)``.

        Returns:
            The PPO metrics (updates and samples summed over the inner rounds, the rest averaged), the
            reward's mean and std on the first batch and ``reward/last_mean`` on the last.
        """
        cfg = self.config
        assert isinstance(cfg, LearnedRewardPPOConfig)
        runs: list[dict[str, float]] = []
        rewards: list[torch.Tensor] = []
        for i in range(cfg.inner_rounds):
            if i == 0:
                batch = self.with_unlabelled(traj, cfg.extra_samples)
            else:
                batch = self.rollout(self.initial_noise(traj.images.shape[0] + cfg.extra_samples))
            with torch.no_grad():
                r = score(batch.images).to(self.device).float()
            rewards.append(r)
            runs.append(self.ppo_update(batch, self.advantages(r)))
        summed = ("charts/ppo_samples", "charts/ppo_updates")
        out = {
            k: (sum if k in summed else mean_or_nan)([run[k] for run in runs if k in run]) for k in runs[0]
        }
        out["charts/ppo_stopped"] = max(run["charts/ppo_stopped"] for run in runs)
        return out | {
            "reward/mean": float(rewards[0].mean()),
            "reward/std": float(rewards[0].std()),
            "reward/last_mean": float(rewards[-1].mean()),
        }


__all__ = ["LearnedRewardPPOConfig", "LearnedRewardPPOTrainer", "normalised"]
