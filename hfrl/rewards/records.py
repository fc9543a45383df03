"""Feedback as plain tensors: what reward models train on, independent of where the labels are stored.

Three records, one per kind of question put to people:

* :class:`LabelledSamples`: outputs labelled good (1) or bad (0), each beside its noisy input.
* :class:`PreferencePairs`: two outputs of the same noisy input and which one is better.
* :class:`TripletFeedback`: HERO-style batches: good/bad labels plus a best-of-batch mark.

Label polarity is fixed here and in :mod:`hfrl.feedback.labels`: 1 means good / left preferred, and a
reward model's score is higher for better outputs. :mod:`hfrl.rewards.store` fills these records from a
:class:`~hfrl.feedback.FeedbackStore`; tests and benchmarks build them from tensors directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np
import torch

from hfrl.data import as_images
from hfrl.errors import DataError

R = TypeVar("R", bound="_Record")


def _values(values: Any, n: int, name: str, allowed: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(-1)
    if tensor.shape[0] != n:
        raise DataError(f"{name}: expected {n} values, one per sample, got {tensor.shape[0]}")
    if not bool(torch.isfinite(tensor).all()):
        raise DataError(f"{name}: contains NaN or inf")
    lo, hi = allowed
    if n and (float(tensor.min()) < lo or float(tensor.max()) > hi):
        raise DataError(
            f"{name}: values must lie in [{lo}, {hi}], got [{tensor.min():.3g}, {tensor.max():.3g}]"
        )
    return tensor


def _same_shape(reference: torch.Tensor, other: torch.Tensor, what: str) -> None:
    if other.shape != reference.shape:
        raise DataError(f"{what}: shape {tuple(other.shape)} does not match {tuple(reference.shape)}")


class _Record:
    """Shared behaviour: length, row subsets and concatenation over every tensor field."""

    def __len__(self) -> int:
        return int(getattr(self, fields(self)[0].name).shape[0])  # type: ignore[arg-type]

    def subset(self: R, index: torch.Tensor | Sequence[int]) -> R:
        """The rows at ``index`` (positions; repeats allowed, e.g. for bootstrap samples)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)})  # type: ignore[type-var]

    def concat(self: R, other: R) -> R:
        """This record's rows followed by ``other``'s."""
        return replace(
            self,  # type: ignore[type-var]
            **{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)},
        )

    def to(self: R, device: torch.device | str) -> R:
        """A copy with every tensor on ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})  # type: ignore[type-var]


@dataclass(frozen=True)
class LabelledSamples(_Record):
    """Outputs labelled good or bad.

    Attributes:
        noisy: ``(N, C, H, W)`` float32 noisy inputs in ``[0, 1]``.
        output: ``(N, C, H, W)`` float32 generator outputs in ``[0, 1]``.
        label: ``(N,)`` float32 in ``[0, 1]``: 1 good, 0 bad, 0.5 when labelers tied (a soft target).
    """

    noisy: torch.Tensor
    output: torch.Tensor
    label: torch.Tensor

    @classmethod
    def from_arrays(cls, noisy: Any, output: Any, label: Any) -> LabelledSamples:
        """Validate and convert tensors or arrays (see :func:`hfrl.data.as_images` for the images).

        Raises:
            DataError: for images of the wrong shape or range, or labels outside ``[0, 1]``.
        """
        x, o = as_images(noisy, name="noisy"), as_images(output, name="output")
        _same_shape(x, o, "output")
        return cls(x, o, _values(label, x.shape[0], "label"))

    @property
    def positive_rate(self) -> float:
        """Mean label (share of good outputs)."""
        return float(self.label.mean()) if len(self) else float("nan")


@dataclass(frozen=True)
class PreferencePairs(_Record):
    """Two outputs of the same noisy input and which is better.

    Attributes:
        noisy: ``(N, C, H, W)`` noisy inputs.
        left: ``(N, C, H, W)`` first outputs.
        right: ``(N, C, H, W)`` second outputs.
        preference: ``(N,)`` probability that ``left`` is better: 1 left, 0 right, 0.5 tie
            (:func:`hfrl.feedback.labels.preference_value`).
    """

    noisy: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    preference: torch.Tensor

    @classmethod
    def from_arrays(cls, noisy: Any, left: Any, right: Any, preference: Any) -> PreferencePairs:
        """Validate and convert tensors or arrays.

        Raises:
            DataError: for images of the wrong shape or range, or preferences outside ``[0, 1]``.
        """
        x = as_images(noisy, name="noisy")
        a, b = as_images(left, name="left"), as_images(right, name="right")
        _same_shape(x, a, "left")
        _same_shape(x, b, "right")
        return cls(x, a, b, _values(preference, x.shape[0], "preference"))


@dataclass(frozen=True)
class TripletFeedback(_Record):
    """HERO-style feedback (arXiv 2410.05116): good/bad labels and the best output of each batch.

    Triplets are drawn from it at training time: anchor = a best output, positive = a good one,
    negative = a bad one.

    Attributes:
        noisy: ``(N, C, H, W)`` noisy inputs.
        output: ``(N, C, H, W)`` outputs.
        label: ``(N,)`` 1 good, 0 bad.
        best: ``(N,)`` bool, marked best of its batch.
    """

    noisy: torch.Tensor
    output: torch.Tensor
    label: torch.Tensor
    best: torch.Tensor

    @classmethod
    def from_arrays(cls, noisy: Any, output: Any, label: Any, best: Any) -> TripletFeedback:
        """Validate and convert tensors or arrays.

        Raises:
            DataError: for images of the wrong shape or range, labels outside ``[0, 1]``, or no best mark.
        """
        x, o = as_images(noisy, name="noisy"), as_images(output, name="output")
        _same_shape(x, o, "output")
        lab = _values(label, x.shape[0], "label")
        best_t = torch.as_tensor(np.asarray(best)).reshape(-1).bool()
        if best_t.shape[0] != x.shape[0]:
            raise DataError(f"best: expected {x.shape[0]} marks, one per sample, got {best_t.shape[0]}")
        return cls(x, o, lab, best_t)

    @classmethod
    def from_labelled(cls, samples: LabelledSamples, best: torch.Tensor) -> TripletFeedback:
        """Add best-of-batch marks ``(N,)`` bool to labelled samples."""
        return cls(samples.noisy, samples.output, samples.label, torch.as_tensor(best).reshape(-1).bool())

    def as_labelled(self) -> LabelledSamples:
        """The good/bad part alone."""
        return LabelledSamples(self.noisy, self.output, self.label)


def check_trainable(samples: LabelledSamples | TripletFeedback, what: str = "labels") -> None:
    """Raise when labels cannot train a good/bad model: none, or only one class.

    Raises:
        DataError: with the counts found.
    """
    n = len(samples)
    good = int((samples.label > 0.5).sum())
    bad = int((samples.label < 0.5).sum())
    if n == 0:
        raise DataError(f"no {what} to train on")
    if good == 0 or bad == 0:
        raise DataError(f"{what}: need both good and bad examples, got {good} good and {bad} bad")


@dataclass(frozen=True)
class UnlabelledPairs(_Record):
    """Generated (noisy input, output) pairs nobody labelled: food for the label-free auxiliary task.

    Attributes:
        noisy: ``(N, C, H, W)`` noisy inputs.
        output: ``(N, C, H, W)`` the generator's outputs for them.
    """

    noisy: torch.Tensor
    output: torch.Tensor

    @classmethod
    def from_arrays(cls, noisy: Any, output: Any) -> UnlabelledPairs:
        """Validate and convert tensors or arrays.

        Raises:
            DataError: for images of the wrong shape or range.
        """
        x, o = as_images(noisy, name="noisy"), as_images(output, name="output")
        _same_shape(x, o, "output")
        return cls(x, o)
