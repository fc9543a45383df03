"""Reward models learned from human feedback.

A reward model scores an output for its noisy input, higher = better: ``forward(noisy, output)`` gives
rewards in ``[0, 1]`` with gradients (what environments and agents call), ``logits`` the same in logit
units, ``predict`` the rewards without gradients, batched, from tensors or arrays.

* Models: :class:`CNNReward` (over the stacked (noisy, output) pair, or the output alone);
  :class:`SimilarityReward` (a logistic regression on how alike the output and a label-free estimate of
  the clean input are; the estimate comes from a frozen :class:`SelfSupervisedDenoiser` trained on noisy
  inputs alone by :func:`train_denoiser`); :class:`EmbeddingReward` (HERO); the :class:`RewardEnsemble`
  wrapper.
* Feedback records: :class:`LabelledSamples`, :class:`PreferencePairs`, :class:`TripletFeedback`,
  :class:`UnlabelledPairs`; :mod:`hfrl.rewards.feedback` reads them from a feedback store.
* Training: :func:`train_reward_model` (binary cross-entropy, Bradley–Terry, triplet; optional Lee-style
  auxiliary loss), :func:`train_ensemble`.
* Active query selection: :class:`RandomSelector`, :class:`DisagreementSelector`, :class:`EntropySelector`.
* Checkpoints: kind ``reward_model``; :func:`build_reward_model` rebuilds a model (or an ensemble) from
  the JSON config, :func:`save_reward_model` writes one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.errors import ConfigError
from hfrl.rewards.denoiser import DenoiserConfig, SelfSupervisedDenoiser, similarity_features, train_denoiser
from hfrl.rewards.embedding import EmbeddingReward
from hfrl.rewards.ensemble import COMBINES, RewardEnsemble
from hfrl.rewards.metrics import binary_report, expected_calibration_error, pairwise_report, roc_auc
from hfrl.rewards.models import CNNReward, RewardModel, RewardModelConfig, SimilarityReward
from hfrl.rewards.records import LabelledSamples, PreferencePairs, TripletFeedback, UnlabelledPairs
from hfrl.rewards.selection import (
    DisagreementSelector,
    EntropySelector,
    QuerySelector,
    RandomSelector,
    make_selector,
)
from hfrl.rewards.training import (
    BinaryRewardTrainer,
    PreferenceRewardTrainer,
    RewardTrainer,
    RewardTrainingConfig,
    TrainResult,
    TripletRewardTrainer,
    build_single,
    make_reward_model,
    train_ensemble,
    train_reward_model,
)

CHECKPOINT_KIND = "reward_model"


def build_reward_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained reward model from a checkpoint config (the ``reward_model`` builder).

    Args:
        config: A single model's :meth:`RewardModelConfig.to_dict`, or
            ``{"ensemble": {"combine": ...}, "members": [...]}`` for a :class:`RewardEnsemble`.

    Raises:
        ConfigError: for unknown keys or values.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"reward model config must be an object, got {type(config).__name__}")
    if "members" in config:
        members = config["members"]
        if not isinstance(members, list) or not members:
            raise ConfigError("ensemble config needs a non-empty 'members' list")
        combine = (config.get("ensemble") or {}).get("combine", "mean")
        if combine not in COMBINES:
            raise ConfigError(f"unknown ensemble combination {combine!r}")
        return RewardEnsemble([build_reward_model(m) for m in members], combine)  # type: ignore[misc]
    return build_single(RewardModelConfig.from_dict(config))


def save_reward_model(
    path: str | os.PathLike, model: RewardModel, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a reward model (or ensemble) as a safetensors + JSON checkpoint; returns the weights path."""
    return save_checkpoint(path, model, kind=CHECKPOINT_KIND, config=model.to_config(), metadata=metadata)


def load_reward_model(path: str | os.PathLike, device: str = "cpu") -> RewardModel:
    """Load a reward model (or ensemble) checkpoint in eval mode."""
    model, _ = load_checkpoint(path, kind=CHECKPOINT_KIND, device=device)
    return model  # type: ignore[return-value]


__all__ = [
    "CHECKPOINT_KIND",
    "BinaryRewardTrainer",
    "CNNReward",
    "DenoiserConfig",
    "DisagreementSelector",
    "EmbeddingReward",
    "EntropySelector",
    "LabelledSamples",
    "PreferencePairs",
    "PreferenceRewardTrainer",
    "QuerySelector",
    "RandomSelector",
    "RewardEnsemble",
    "RewardModel",
    "RewardModelConfig",
    "RewardTrainer",
    "RewardTrainingConfig",
    "SelfSupervisedDenoiser",
    "SimilarityReward",
    "TrainResult",
    "TripletFeedback",
    "TripletRewardTrainer",
    "UnlabelledPairs",
    "binary_report",
    "build_reward_model",
    "expected_calibration_error",
    "load_reward_model",
    "make_reward_model",
    "make_selector",
    "pairwise_report",
    "roc_auc",
    "save_reward_model",
    "similarity_features",
    "train_denoiser",
    "train_ensemble",
    "train_reward_model",
]
