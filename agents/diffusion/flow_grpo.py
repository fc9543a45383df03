"""Flow-GRPO (``flow-grpo``): PPO on the sampler's steps with group-relative advantages.

Liu et al. 2025, arXiv 2505.05470. GRPO (Shao et al. 2024) drops the value function: each conditioning is
sampled ``K`` times and a sample's advantage is its reward against its group's,
``A = (r - mean_group) / (std_group + eps)``. The policy update is PPO-clip over the stochastic sampler's
steps with the closed-form per-step KL to the reference model, ``||mu - mu_ref||^2 / (2 sigma^2)`` for two
Gaussian steps of the same variance (:meth:`~hfrl.agents.diffusion.trainer.OnlineDiffusionTrainer.kl_to_reference`).

The digits task is unconditional, so a group is ``K`` chains from the same initial noise ``x_T`` (the
"prompt" the group shares); with ``eta = 1`` each chain's own step noise makes them differ. The reward is
the reward model learned from every good/bad label so far, as for ``ddpo``
(:class:`~hfrl.agents.diffusion.binary_reward.BinaryRewardMixin`); on flow models the paper's SDE sampler
plays the role the stochastic DDIM steps play here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin
from hfrl.agents.diffusion.ppo import LearnedRewardPPOConfig, LearnedRewardPPOTrainer
from hfrl.agents.diffusion.trainer import Trajectories
from hfrl.diffusion import initial_noise
from hfrl.errors import ConfigError
from hfrl.feedback import SINGLE


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: ``(r - mean_group) / (std_group + eps)`` over consecutive groups of ``group_size``.

    Args:
        rewards: ``(B,)`` with ``B`` a multiple of ``group_size``; group ``g`` is ``rewards[g K : (g + 1) K]``.
        group_size: ``K``.
        eps: Keeps a group of equal rewards at advantage 0.

    Raises:
        ConfigError: when ``B`` is not a multiple of ``K``.
    """
    if rewards.numel() % group_size:
        raise ConfigError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.reshape(-1, group_size)
    std = groups.std(dim=1, unbiased=False, keepdim=True)  # the population std, as np.std in the paper's code
    return ((groups - groups.mean(dim=1, keepdim=True)) / (std + eps)).reshape(-1)


@dataclass
class FlowGRPOConfig(LearnedRewardPPOConfig):
    """Flow-GRPO: groups of chains from one initial noise, group-relative advantages, PPO-clip and KL."""

    group_size: int = 8
    """``K``: chains per group (sharing one initial noise). ``batch_size`` and ``extra_samples`` must be
    multiples of it. Seed 0, digit 7, 64 labels a round (success on 128 fresh-noise samples, base 7.8 %):
    after 256 labels 28.1 % with 8, 17.2 % with 4 (21.9 % with 4 and ``kl`` 0). One seed: not tuned further."""
    kl: float = 0.01
    """Weight of the per-step KL to the base model (the paper's ``beta``; as ``ddpo``'s)."""
    eps: float = 1e-4
    """Added to a group's reward std."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise ConfigError(
                f"group_size must be at least 2 (a group of one has no baseline), got {self.group_size}"
            )
        if self.batch_size % self.group_size or self.extra_samples % self.group_size:
            raise ConfigError(
                f"batch_size ({self.batch_size}) and extra_samples ({self.extra_samples}) must be multiples "
                f"of group_size ({self.group_size})"
            )
        if self.eps <= 0:
            raise ConfigError(f"eps must be > 0, got {self.eps}")


class FlowGRPOTrainer(BinaryRewardMixin, LearnedRewardPPOTrainer):
    """Flow-GRPO (arXiv 2505.05470) on the learned good/bad reward: group-relative PPO with a KL to the base.

    Every batch (labelled, unlabelled extra and inner-round ones) is drawn as groups of ``group_size``
    chains from one initial noise each (:meth:`initial_noise`), and :meth:`advantages` normalises the learned
    rewards within each group.
    """

    name = "flow-grpo"
    feedback_kind = SINGLE
    config_class = FlowGRPOConfig
    config: FlowGRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()

    def initial_noise(self, num: int) -> torch.Tensor:
        """``num / K`` fresh noises, each repeated ``K`` times in a row (one group each)."""
        k = self.config.group_size
        if num % k:
            raise ConfigError(f"flow-grpo samples groups of {k}; {num} samples do not split into them")
        return initial_noise(num // k, self.image_shape, self.rng).repeat_interleave(k, dim=0)

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """Group-relative advantages (:func:`group_advantages`)."""
        return group_advantages(rewards, self.config.group_size, self.config.eps)

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        self.pool.add(traj.images, feedback.labels)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        return metrics | self.learned_reward_ppo(traj, self.reward)


__all__ = ["FlowGRPOConfig", "FlowGRPOTrainer", "group_advantages"]
