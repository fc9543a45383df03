"""Settings and names of reward-model training, importable without torch.

:class:`DenoiserConfig` (re-exported by :mod:`hfrl.rewards.denoiser`), :class:`RewardTrainingConfig`
(:mod:`hfrl.rewards.training`) and the choices :data:`KINDS`, :data:`MODELS` (:mod:`hfrl.rewards.fit`),
:data:`COMBINES` (:mod:`hfrl.rewards.ensemble`), :data:`RESAMPLING` and :data:`NEGATIVE_KINDS`
(:mod:`hfrl.rewards.augment`) live here so that ``hfrl reward train --help`` imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hfrl.errors import ConfigError

if TYPE_CHECKING:
    from hfrl.rewards.augment import PairAugment

KINDS = ("binary", "pairwise", "triplet")
"""Feedback a reward model can learn from: good/bad labels, pairwise preferences, HERO best marks."""
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "similarity": ("similarity", ()),
    "output": ("cnn", ("output",)),
    "pair": ("cnn", ("noisy", "output")),
    "residual": ("cnn", ("noisy", "output", "residual")),
    "denoised": ("cnn", ("output", "denoised", "denoised_residual")),
}
"""Model names: ``(architecture, input channels)``; ``triplet`` turns ``cnn`` into ``embedding``."""
COMBINES = ("mean", "product")
"""How the members of a :class:`~hfrl.rewards.ensemble.RewardEnsemble` combine."""
RESAMPLING = ("bootstrap", "disjoint")
"""How each ensemble member's labels are drawn: a bootstrap sample or a disjoint part."""
NEGATIVE_KINDS = ("other", "flip", "shift")
"""Kinds of wrong input for the auxiliary task: another sample's input, the true input mirrored
left-right, or the true input shifted by 3-5 pixels."""


@dataclass
class DenoiserConfig:
    """How the self-supervised denoiser is trained."""

    steps: int = 1000
    """Optimiser steps (>= 1). The masked loss levels off after a few hundred, but the estimate's SSIM to
    the clean images keeps improving slowly beyond that, so more steps still help the reward."""
    batch_size: int = 64
    """Noisy images per step."""
    lr: float = 2e-3
    """Adam learning rate."""
    width: int = 16
    """Channels of the U-Net's first level."""
    grid: int = 4
    """Mask every ``grid``-th pixel in each direction (1 / grid**2 of the pixels per step)."""
    radius: int = 0
    """Half-width of the blind spot: 0 hides single pixels (Noise2Self, for white noise); ``R`` hides a
    ``(2R + 1)``-pixel square, for noise correlated over about ``R`` pixels (``grid`` >= 2R + 2)."""
    stride: int = 1
    """Pixel-shuffle factor: learn on the ``stride**2`` sub-images of every ``stride``-th pixel, whose
    neighbours' noise is nearly independent (1: whole images)."""
    seed: int = 0
    """Seed of initialisation, batches and masks."""
    device: str = "cpu"
    """``auto``, ``cpu`` or ``cuda``."""

    def __post_init__(self) -> None:
        from hfrl.blindspot import check_blindspot  # torch: not needed to read the fields (--help)

        if self.steps < 1 or self.batch_size < 1 or self.width < 1 or self.grid < 2 or self.lr <= 0:
            raise ConfigError(
                "self-supervised denoiser: steps, batch_size and width must be >= 1, grid >= 2, lr > 0"
            )
        check_blindspot(self.grid, self.radius, self.stride)

    @property
    def variant(self) -> str:
        """A short name of the blind-spot variant, for tables: ``n2s``, ``n2s-r2``, ``n2s-s2``, ..."""
        return (
            "n2s"
            + (f"-r{self.radius}" if self.radius else "")
            + (f"-s{self.stride}" if self.stride > 1 else "")
        )


@dataclass
class RewardTrainingConfig:
    """How a reward model is fitted. Field names are what the CLI and sweeps set."""

    steps: int = 500
    """Optimiser steps (>= 0). For the output-only CNN the held-out AUC against the labeler keeps rising
    up to about the default and then stays; augmentation keeps the many passes over a few hundred labels
    from overfitting (reward models' agreement: ``scripts/bench_reward.py``, ``bench-results/reward.md``)."""
    batch_size: int = 64
    """Labelled examples (samples, pairs or triplets) per step."""
    lr: float = 3e-3
    """AdamW learning rate, cosine-decayed to zero."""
    weight_decay: float = 1e-3
    """AdamW weight decay."""
    class_weighting: bool = True
    """Weight good and bad labels so both classes count equally (Yoon et al. weight the rare class)."""
    label_smoothing: float = 0.05
    """Targets move to ``y (1 - eps) + eps / 2``; a guard against over-confidence on few, noisy labels."""
    augment: bool = True
    """Apply :class:`~hfrl.rewards.augment.PairAugment` (rotation, shift, output noise) to every batch
    (not to models whose features it would change: :class:`~hfrl.rewards.models.SimilarityReward`)."""
    max_rotation: float = 10.0
    """Largest augmentation rotation, degrees."""
    max_shift: float = 2.0
    """Largest augmentation shift, pixels."""
    output_noise: float = 0.05
    """Largest standard deviation of Gaussian noise added to outputs (perturbed outputs, same label)."""
    aux_weight: float = 0.0
    """Weight of the Lee-style auxiliary loss (0 = off): tell an output's true input from others."""
    aux_negatives: tuple[str, ...] = NEGATIVE_KINDS
    """Wrong inputs per output for the auxiliary loss (see :data:`hfrl.rewards.augment.NEGATIVE_KINDS`)."""
    aux_batch_size: int = 16
    """Outputs per step for the auxiliary loss, drawn from unlabelled and labelled pairs alike (each costs
    ``1 + len(aux_negatives)`` forward passes)."""
    pretrain_steps: int = 0
    """Steps of the auxiliary task alone before the labels are used (a label-free warm start)."""
    triplet_margin: float = 0.5
    """Margin of HERO's triplet loss, in cosine distance."""
    reference: str = "best"
    """HERO reference embeddings after training: ``best`` samples or all ``good`` ones."""
    seed: int = 0
    """Seed of initialisation, batches, augmentation and dropout."""
    device: str = "cpu"
    """``auto``, ``cpu`` or ``cuda``."""

    def __post_init__(self) -> None:
        if self.steps < 0 or self.pretrain_steps < 0 or self.batch_size < 1 or self.aux_batch_size < 1:
            raise ConfigError("steps and pretrain_steps must be >= 0 and batch sizes >= 1")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.aux_weight < 0:
            raise ConfigError(f"aux_weight must be >= 0, got {self.aux_weight}")
        self.aux_negatives = tuple(self.aux_negatives)
        bad = [k for k in self.aux_negatives if k not in NEGATIVE_KINDS]
        if bad or not self.aux_negatives:
            raise ConfigError(f"aux_negatives must be a non-empty subset of {NEGATIVE_KINDS}, got {bad}")
        if self.reference not in ("best", "good"):
            raise ConfigError(f"reference must be 'best' or 'good', got {self.reference!r}")

    def augmentation(self) -> PairAugment | None:
        """The augmentation these settings describe, or ``None`` when off."""
        from hfrl.rewards.augment import PairAugment  # torch: imported when training, not for --help

        if not self.augment:
            return None
        return PairAugment(self.max_rotation, self.max_shift, self.output_noise)
