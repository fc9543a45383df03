"""Which generated outputs to put before people next: random, or where the reward model is least sure.

Each selector has one job: ``select(noisy, output, n, generator) -> indices``. The feedback loop
generates a pool of candidates, asks a selector for ``n`` of them, and queues those for labelling:

* :class:`RandomSelector`: uniform without replacement (the baseline);
* :class:`DisagreementSelector`: largest standard deviation across ensemble members (Yoon et al.,
  arXiv 2307.02770; Christiano et al. 2017 query by ensemble variance);
* :class:`EntropySelector`: largest predictive entropy of one model's probability of *good*.

Uncertainty sampling alone tends to pick near-duplicates; ``diversity_pool`` > 1 first takes that many
times ``n`` of the most uncertain candidates and then draws ``n`` of them at random, which keeps a batch
varied at little cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from hfrl.errors import ConfigError, DataError
from hfrl.rewards.ensemble import RewardEnsemble
from hfrl.rewards.models import RewardModel, as_pair


class QuerySelector(ABC):
    """Chooses ``n`` of ``N`` candidate outputs to label."""

    def select(
        self, noisy: Any, output: Any, n: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Indices of the chosen candidates.

        Args:
            noisy: ``(N, 1, H, W)`` noisy inputs (tensor or array); ``None`` when the selector's model does
                not read them (see :attr:`needs_noisy`).
            output: ``(N, 1, H, W)`` candidate outputs.
            n: How many to choose (at most ``N``).
            generator: CPU generator for random choices and tie-breaking (default: seed 0).

        Returns:
            ``(min(n, N),)`` int64 distinct indices, most informative first.
        """
        x, o = as_pair(noisy, output, needs_noisy=self.needs_noisy)
        if n < 0:
            raise DataError(f"cannot select {n} candidates")
        n = min(int(n), x.shape[0])
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        return self._select(x, o, n, generator)

    @property
    def needs_noisy(self) -> bool:
        """Whether :meth:`select` needs the noisy inputs (``noisy=None`` is allowed otherwise)."""
        return False

    @abstractmethod
    def _select(
        self, noisy: torch.Tensor, output: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor: ...


class RandomSelector(QuerySelector):
    """Uniformly at random, without replacement."""

    def _select(
        self, noisy: torch.Tensor, output: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        return torch.randperm(noisy.shape[0], generator=generator)[:n]


class UncertaintySelector(QuerySelector):
    """Largest :meth:`score` first, optionally thinned for diversity.

    Args:
        diversity_pool: Take ``diversity_pool * n`` of the highest-scoring candidates, then ``n`` of them
            at random (1 = pure top-``n``).
    """

    def __init__(self, diversity_pool: float = 1.0) -> None:
        if diversity_pool < 1.0:
            raise ConfigError(f"diversity_pool must be >= 1, got {diversity_pool}")
        self.diversity_pool = float(diversity_pool)

    @abstractmethod
    def score(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """``(N,)`` uncertainty of each candidate, higher = more worth asking about."""

    def _select(
        self, noisy: torch.Tensor, output: torch.Tensor, n: int, generator: torch.Generator
    ) -> torch.Tensor:
        s = self.score(noisy, output)
        # a tiny random jitter breaks ties reproducibly
        s = s + 1e-9 * torch.rand(s.shape, generator=generator)
        order = torch.argsort(s, descending=True)
        pool = min(len(order), max(n, int(round(self.diversity_pool * n))))
        if pool > n:
            keep = torch.randperm(pool, generator=generator)[:n]
            chosen = order[:pool][keep]
            return chosen[torch.argsort(s[chosen], descending=True)]
        return order[:n]


class DisagreementSelector(UncertaintySelector):
    """Where the members of a :class:`RewardEnsemble` disagree most (std of their probabilities).

    Args:
        ensemble: The current reward ensemble.
        diversity_pool: See :class:`UncertaintySelector`.
    """

    def __init__(self, ensemble: RewardEnsemble, diversity_pool: float = 1.0) -> None:
        super().__init__(diversity_pool)
        if not isinstance(ensemble, RewardEnsemble):
            raise ConfigError(
                "DisagreementSelector needs a RewardEnsemble; use EntropySelector for one model"
            )
        self.ensemble = ensemble

    @property
    def needs_noisy(self) -> bool:  # noqa: D102
        return self.ensemble.uses_noisy

    def score(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.ensemble.uncertainty(noisy, output)


class EntropySelector(UncertaintySelector):
    """Where one model's probability of *good* is closest to 1/2 (largest binary entropy).

    Args:
        model: Any reward model (an ensemble's combined probability works too).
        diversity_pool: See :class:`UncertaintySelector`.
    """

    def __init__(self, model: RewardModel, diversity_pool: float = 1.0) -> None:
        super().__init__(diversity_pool)
        self.model = model

    @property
    def needs_noisy(self) -> bool:  # noqa: D102
        return self.model.uses_noisy

    def score(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:  # noqa: D102
        p = self.model.predict_th(noisy, output).clamp(1e-6, 1 - 1e-6)
        return -(p * p.log() + (1 - p) * (1 - p).log())


def make_selector(name: str, model: RewardModel | None = None, diversity_pool: float = 1.0) -> QuerySelector:
    """A selector by name: ``random``, ``disagreement`` (needs an ensemble) or ``entropy``.

    Raises:
        ConfigError: for an unknown name or a missing model.
    """
    if name == "random":
        return RandomSelector()
    if model is None:
        raise ConfigError(f"the {name!r} selector needs a reward model")
    if name == "disagreement":
        return DisagreementSelector(model, diversity_pool)  # type: ignore[arg-type]
    if name == "entropy":
        return EntropySelector(model, diversity_pool)
    raise ConfigError(f"unknown query selector {name!r}; expected random, disagreement or entropy")
