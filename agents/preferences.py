"""Where preference labels come from when an agent asks for them (the synthetic labeler by default).

An agent that learns from comparisons without a reward model (:mod:`hfrl.agents.dpo`) hands the
environment's current episodes and two outputs per episode to a :class:`PreferenceSource`, which answers
with the probability that the first is better. The synthetic labeler reads the episodes' clean images —
the agent itself never does.
"""

from __future__ import annotations

from typing import Protocol

import torch

from hfrl.envs.denoise import Episodes
from hfrl.feedback.labels import preference_value
from hfrl.judges import SyntheticLabeler


class PreferenceSource(Protocol):
    """Answers ``(episodes, left (N,1,H,W), right (N,1,H,W)) -> (N,)`` in ``{1, 0, 0.5}`` (left better)."""

    def __call__(self, episodes: Episodes, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor: ...  # noqa: D102


class SyntheticPreferences:
    """Pairwise answers of a :class:`~hfrl.judges.SyntheticLabeler` (the stand-in for people).

    Args:
        labeler: The labeler (default: the shipped one, exact).
    """

    def __init__(self, labeler: SyntheticLabeler | None = None) -> None:
        self.labeler = labeler if labeler is not None else SyntheticLabeler.from_pretrained()

    def __call__(self, episodes: Episodes, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Probability that ``left`` is better, per pair ``(N,)`` on ``left``'s device."""
        words = self.labeler.compare(left.clamp(0, 1), right.clamp(0, 1), episodes.clean, episodes.classes)
        return torch.tensor([preference_value(w) for w in words], device=left.device)
