"""DDPO with DPOK's KL (``ddpo``): PPO on the reverse chain against a good/bad reward model.

Black et al. 2023 (DDPO) and Fan et al. 2023 (DPOK); the reward model is retrained each round on every
good/bad label so far (:class:`~hfrl.agents.diffusion.binary_reward.BinaryRewardMixin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin
from hfrl.agents.diffusion.ppo import LearnedRewardPPOConfig, LearnedRewardPPOTrainer
from hfrl.agents.diffusion.trainer import Trajectories
from hfrl.feedback import SINGLE


@dataclass
class DDPOConfig(LearnedRewardPPOConfig):
    """DDPO-style PPO on a reward model learned from the same labels, with the DPOK KL penalty."""

    kl: float = 0.01
    """Weight of the per-step KL to the base model (DPOK)."""


class DDPOTrainer(BinaryRewardMixin, LearnedRewardPPOTrainer):
    """PPO on the reverse chain (DDPO, Black et al. 2023) against a learned good/bad reward model.

    With DPOK's KL to the base model (Fan et al. 2023); the labelled batch plus ``extra_samples``
    unlabelled ones are the PPO batch.
    """

    name = "ddpo"
    feedback_kind = SINGLE
    config_class = DDPOConfig
    config: DDPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        self.pool.add(traj.images, feedback.labels)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        return metrics | self.learned_reward_ppo(traj, self.reward)


__all__ = ["DDPOConfig", "DDPOTrainer"]
