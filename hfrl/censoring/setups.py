"""Censored sampling, single model, union and ensemble (Yoon et al. 2023, Sec. 5) (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from hfrl.censoring.labels import CensorLabels
from hfrl.censoring.reward import (
    CensorReward,
    CensorRewardConfig,
    ProductEnsemble,
    RewardLike,
    RewardTrainConfig,
    train_censor_reward,
)
from hfrl.errors import ConfigError, DataError

REWARD_SETUPS = ("single", "union", "ensemble")


def ensemble_subsets(
    labels: CensorLabels, members: int = 5, benign_per_member: int = 10, seed: int = 0
) -> list[torch.Tensor]:
    """Index sets of the ensemble members: every malign sample plus ``benign_per_member`` benign ones each.

    Benign samples are dealt from one seeded permutation, so members get disjoint benign sets while there
    are enough (``members * benign_per_member``) and overlapping ones (dealt round again) when there are not.

    Returns:
        ``members`` int64 index tensors into ``labels``.
    """
    malign_idx = torch.nonzero(~labels.benign).flatten()
    benign_idx = torch.nonzero(labels.benign).flatten()
    if len(benign_idx) == 0 or len(malign_idx) == 0:
        raise DataError(
            f"need benign and malign labels, got {labels.n_benign} benign and {labels.n_malign} malign"
        )
    perm = benign_idx[torch.randperm(len(benign_idx), generator=torch.Generator().manual_seed(seed))]
    take = min(benign_per_member, len(perm))
    subsets = []
    for k in range(members):
        pos = torch.arange(k * take, (k + 1) * take) % len(perm)
        subsets.append(torch.cat([malign_idx, perm[pos]]))
    return subsets


def train_reward_setup(
    labels: CensorLabels,
    setup: str = "ensemble",
    *,
    time_dependent: bool = True,
    members: int = 5,
    benign_per_member: int = 10,
    train: RewardTrainConfig | None = None,
    schedule: Any = None,
    device: torch.device | str = "cpu",
) -> RewardLike:
    """Train the reward model of one of the paper's setups from the same labels.

    * ``single``: one model on member 0's data (all malign + ``benign_per_member`` benign);
    * ``union``: one model on the union of the members' data (all malign + all benign they use);
    * ``ensemble``: ``members`` models, one per subset, combined by :class:`ProductEnsemble`.

    Args:
        labels: The labelled samples.
        setup: ``single``, ``union`` or ``ensemble``.
        time_dependent: Train time-dependent models (for classifier guidance) or time-independent ones.
        members: Ensemble size (the paper: 5).
        benign_per_member: Benign samples per member (the paper: 10, as many as malign).
        train: Optimisation settings; member ``k`` uses ``seed + k``. The union model trains for
            ``members / 2`` times as many iterations (the paper: 3x), as it has more data.
        schedule: The DDPM's noise schedule (time-dependent models).
        device: Training device.
    """
    if setup not in REWARD_SETUPS:
        raise ConfigError(f"unknown reward setup {setup!r}; expected one of {', '.join(REWARD_SETUPS)}")
    train = train or RewardTrainConfig()
    config = CensorRewardConfig(time_dependent=time_dependent)
    subsets = ensemble_subsets(labels, members, benign_per_member, seed=train.seed)

    def fit(index: torch.Tensor, cfg: RewardTrainConfig) -> CensorReward:
        return train_censor_reward(
            labels.images[index], labels.benign[index], config, cfg, schedule=schedule, device=device
        )

    if setup == "single":
        return fit(subsets[0], train)
    if setup == "union":
        union = torch.unique(torch.cat(subsets))
        iterations = int(train.iterations * max(1.0, members / 2))
        return fit(union, RewardTrainConfig(**{**asdict(train), "iterations": iterations}))
    return ProductEnsemble(
        [
            fit(s, RewardTrainConfig(**{**asdict(train), "seed": train.seed + k}))
            for k, s in enumerate(subsets)
        ]
    )
