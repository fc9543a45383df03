"""Ensembles of reward models: a combined reward and the members' disagreement.

Following Yoon et al. (arXiv 2307.02770), K members are trained on different resamples of the labels
(bootstrap samples or disjoint subsets, see :func:`hfrl.rewards.training.train_ensemble`). Their
probabilities ``p_k = sigmoid(l_k)`` are combined either as

* ``mean``: ``p = mean_k p_k`` — the usual ensemble average; or
* ``product``: ``p = prod_k p_k / (prod_k p_k + prod_k (1 - p_k))`` — Yoon et al.'s product of
  probabilities (a product of experts): an output must convince every member, which makes it harder to
  exploit any single member's blind spot. In logit units it is ``sum_k l_k``.

The standard deviation of the ``p_k`` (:meth:`RewardEnsemble.std`) measures disagreement; active query
selection (:mod:`hfrl.rewards.selection`) asks people about the outputs where it is largest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hfrl.errors import ConfigError
from hfrl.rewards.config import COMBINES
from hfrl.rewards.models import RewardModel, as_pair

_EPS = 1e-6


class RewardEnsemble(RewardModel):
    """K reward models behind one reward.

    Args:
        members: The models (at least one); all must share the same input kind.
        combine: ``mean`` or ``product`` (see the module docstring).
    """

    def __init__(self, members: Sequence[RewardModel], combine: str = "mean") -> None:
        super().__init__()
        if not members:
            raise ConfigError("a reward ensemble needs at least one member")
        if combine not in COMBINES:
            raise ConfigError(
                f"unknown ensemble combination {combine!r}; expected one of {', '.join(COMBINES)}"
            )
        self.members = nn.ModuleList(members)
        self.combine = combine
        self.config = members[0].config

    def __len__(self) -> int:
        return len(self.members)

    @property
    def uses_noisy(self) -> bool:  # noqa: D102
        return any(m.uses_noisy for m in self.members)  # type: ignore[union-attr]

    def denoise(self, noisy: torch.Tensor) -> torch.Tensor | None:
        """The members' shared denoiser estimate, computed once (``None`` when they do not share one)."""
        # compared on each call, not cached: a checkpoint loads its weights after construction
        return self.members[0].denoise(noisy) if _same_denoiser(self.members) else None  # type: ignore[operator, arg-type]

    def member_logits(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Each member's logits, ``(K, B)``."""
        if denoised is None:
            denoised = self.denoise(noisy)
        return torch.stack([m.logits(noisy, output, denoised) for m in self.members])  # type: ignore[operator]

    def logits(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Combined logits ``(B,)``: ``logit(mean p_k)`` or ``sum l_k`` (product of probabilities)."""
        member = self.member_logits(noisy, output, denoised)  # (K, B)
        if self.combine == "product":
            return member.sum(0)
        return torch.logit(torch.sigmoid(member).mean(0).clamp(_EPS, 1.0 - _EPS))

    def std(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Standard deviation ``(B,)`` of the members' probabilities (0 with one member), with gradients."""
        p = torch.sigmoid(self.member_logits(noisy, output))  # (K, B)
        return p.std(0, unbiased=False)

    @torch.no_grad()
    def uncertainty(self, noisy: Any, output: Any, *, batch_size: int = 1024) -> torch.Tensor:
        """:meth:`std` without gradients, batched, from tensors or arrays; a CPU ``(B,)`` tensor."""
        x, o = as_pair(noisy, output, needs_noisy=self.uses_noisy)
        was_training = self.training
        self.eval()
        try:
            out = torch.cat(
                [
                    self.std(xb.to(self.device), ob.to(self.device)).cpu()
                    for xb, ob in zip(x.split(batch_size), o.split(batch_size))
                ]
            )
        finally:
            self.train(was_training)
        return out

    def to_config(self) -> dict[str, Any]:
        """``{"ensemble": {"combine": ...}, "members": [member configs]}``."""
        return {"ensemble": {"combine": self.combine}, "members": [m.to_config() for m in self.members]}  # type: ignore[operator]


def _same_denoiser(members: Sequence[RewardModel]) -> bool:
    """Whether every member holds the same denoiser weights (so the estimate is computed once)."""
    first = getattr(members[0], "denoiser", None)
    if first is None:
        return False
    ref = first.state_dict()
    for m in members[1:]:
        denoiser = getattr(m, "denoiser", None)
        if denoiser is None:
            return False
        other = denoiser.state_dict()
        if ref.keys() != other.keys() or any(not torch.equal(ref[k], other[k]) for k in ref):
            return False
    return True
