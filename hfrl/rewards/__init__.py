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
from typing import TYPE_CHECKING, Any

from hfrl.errors import ConfigError
from hfrl.lazy import lazy_exports

if TYPE_CHECKING:
    from torch import nn

    from hfrl.rewards.config import COMBINES as COMBINES
    from hfrl.rewards.config import DenoiserConfig, RewardTrainingConfig
    from hfrl.rewards.denoiser import SelfSupervisedDenoiser, similarity_features, train_denoiser
    from hfrl.rewards.embedding import EmbeddingReward
    from hfrl.rewards.ensemble import RewardEnsemble
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
        TrainResult,
        TripletRewardTrainer,
        make_reward_model,
        train_ensemble,
        train_reward_model,
    )
    from hfrl.rewards.training import (
        build_single as build_single,
    )

_EXPORTS = {
    "DenoiserConfig": "hfrl.rewards.config",
    "SelfSupervisedDenoiser": "hfrl.rewards.denoiser",
    "similarity_features": "hfrl.rewards.denoiser",
    "train_denoiser": "hfrl.rewards.denoiser",
    "EmbeddingReward": "hfrl.rewards.embedding",
    "COMBINES": "hfrl.rewards.config",
    "RewardEnsemble": "hfrl.rewards.ensemble",
    "binary_report": "hfrl.rewards.metrics",
    "expected_calibration_error": "hfrl.rewards.metrics",
    "pairwise_report": "hfrl.rewards.metrics",
    "roc_auc": "hfrl.rewards.metrics",
    "CNNReward": "hfrl.rewards.models",
    "RewardModel": "hfrl.rewards.models",
    "RewardModelConfig": "hfrl.rewards.models",
    "SimilarityReward": "hfrl.rewards.models",
    "LabelledSamples": "hfrl.rewards.records",
    "PreferencePairs": "hfrl.rewards.records",
    "TripletFeedback": "hfrl.rewards.records",
    "UnlabelledPairs": "hfrl.rewards.records",
    "DisagreementSelector": "hfrl.rewards.selection",
    "EntropySelector": "hfrl.rewards.selection",
    "QuerySelector": "hfrl.rewards.selection",
    "RandomSelector": "hfrl.rewards.selection",
    "make_selector": "hfrl.rewards.selection",
    "BinaryRewardTrainer": "hfrl.rewards.training",
    "PreferenceRewardTrainer": "hfrl.rewards.training",
    "RewardTrainer": "hfrl.rewards.training",
    "RewardTrainingConfig": "hfrl.rewards.config",
    "TrainResult": "hfrl.rewards.training",
    "TripletRewardTrainer": "hfrl.rewards.training",
    "build_single": "hfrl.rewards.training",
    "make_reward_model": "hfrl.rewards.training",
    "train_ensemble": "hfrl.rewards.training",
    "train_reward_model": "hfrl.rewards.training",
}
"""Public names and the module each comes from: imported on first use (``from hfrl.rewards import X``
works as before), so that importing a light submodule such as :mod:`hfrl.rewards.config` (the CLI's
``--help``) does not import torch."""


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


CHECKPOINT_KIND = "reward_model"


def build_reward_model(config: dict[str, Any]) -> nn.Module:
    """Rebuild an untrained reward model from a checkpoint config (the ``reward_model`` builder).

    Args:
        config: A single model's :meth:`RewardModelConfig.to_dict`, or
            ``{"ensemble": {"combine": ...}, "members": [...]}`` for a :class:`RewardEnsemble`.

    Raises:
        ConfigError: for unknown keys or values.
    """
    from hfrl.rewards.config import COMBINES
    from hfrl.rewards.ensemble import RewardEnsemble
    from hfrl.rewards.models import RewardModelConfig
    from hfrl.rewards.training import build_single

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
    from hfrl.checkpoint import save_checkpoint

    return save_checkpoint(path, model, kind=CHECKPOINT_KIND, config=model.to_config(), metadata=metadata)


def load_reward_model(path: str | os.PathLike, device: str = "cpu") -> RewardModel:
    """Load a reward model (or ensemble) checkpoint in eval mode."""
    from hfrl.checkpoint import load_checkpoint

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
