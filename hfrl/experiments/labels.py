"""Collect labels in rounds through the feedback queue: what to ask, asking, waiting for the answers.

:func:`collect_labels` splits a label budget into rounds. Each round chooses outputs from a pool —
the first at random, later ones (``selection="active"``) where a small reward ensemble trained on the
labels so far disagrees most (Christiano et al. 2017; Yoon et al., arXiv 2307.02770) — enqueues them as
one query in the :class:`~hfrl.feedback.FeedbackQueue` and waits for the answers. The synthetic labeler
answers in-process through :func:`~hfrl.feedback.simulate` (the same store functions the labelling page
uses); people answer on the page, which :func:`hfrl.feedback.collect.label_server` serves from a
background thread.

It joins the feedback package (the queue) and the rewards package (the ensemble that chooses), so it
lives here rather than in either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hfrl.errors import ConfigError, DataError
from hfrl.feedback.errors import FeedbackError
from hfrl.feedback.queue import FeedbackQueue, FeedbackTimeoutError
from hfrl.feedback.simulate import Labeler, simulate
from hfrl.feedback.store import FeedbackStore

if TYPE_CHECKING:  # reward models pull in torchmetrics: imported where they are used
    from hfrl.rewards import RewardEnsemble
    from hfrl.rewards.records import LabelledSamples


RANDOM, DISAGREEMENT = "random", "disagreement"
SELECTIONS = ("active", "random")


@dataclass(frozen=True)
class LabelRound:
    """One round of questions.

    Attributes:
        round: 1-based round number (also stored with the query).
        query_id: The feedback query that carried the round.
        selection: How its outputs were chosen: ``random`` or ``disagreement``.
        indices: ``(n,)`` int64 pool indices asked about, in query order.
        values: ``(n,)`` float32 answers: 1 good, 0 bad, ``nan`` skipped.
        seconds: Wall time of the round (choosing, asking and waiting).
        note: Why the selection differs from what was asked for, if it does.
    """

    round: int
    query_id: int
    selection: str
    indices: torch.Tensor
    values: torch.Tensor
    seconds: float
    note: str = ""

    @property
    def good(self) -> int:
        """Outputs labelled good."""
        return int((self.values > 0.5).sum())

    @property
    def bad(self) -> int:
        """Outputs labelled bad."""
        return int((self.values < 0.5).sum())

    @property
    def skipped(self) -> int:
        """Outputs skipped (no usable label)."""
        return int(torch.isnan(self.values).sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts, not tensors)."""
        return {
            "round": self.round,
            "query_id": self.query_id,
            "selection": self.selection,
            "asked": int(self.indices.numel()),
            "good": self.good,
            "bad": self.bad,
            "skipped": self.skipped,
            "seconds": self.seconds,
            "note": self.note,
        }


@dataclass(frozen=True)
class CollectedLabels:
    """Every round's questions and answers.

    Attributes:
        rounds: The rounds, in order.
    """

    rounds: tuple[LabelRound, ...]

    @property
    def asked(self) -> torch.Tensor:
        """``(M,)`` pool indices of every output asked about, in order."""
        return (
            torch.cat([r.indices for r in self.rounds]) if self.rounds else torch.zeros(0, dtype=torch.long)
        )

    @property
    def answers(self) -> torch.Tensor:
        """``(M,)`` float32 answers to :attr:`asked` (``nan`` skipped)."""
        return torch.cat([r.values for r in self.rounds]) if self.rounds else torch.zeros(0)

    @property
    def indices(self) -> torch.Tensor:
        """``(N,)`` pool indices with a usable (good or bad) label."""
        return self.asked[~torch.isnan(self.answers)]

    @property
    def values(self) -> torch.Tensor:
        """``(N,)`` float32 labels of :attr:`indices`: 1 good, 0 bad."""
        return self.answers[~torch.isnan(self.answers)]

    def __len__(self) -> int:
        return int(self.values.numel())

    def samples(self, noisy: torch.Tensor, outputs: torch.Tensor) -> LabelledSamples:
        """The labelled rows as :class:`~hfrl.rewards.LabelledSamples` (the pool's ``(N, C, H, W)`` tensors)."""
        from hfrl.rewards.records import LabelledSamples

        idx = self.indices
        return LabelledSamples(noisy[idx], outputs[idx], self.values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: totals and one entry per round."""
        return {
            "labels": len(self),
            "asked": int(self.asked.numel()),
            "good": sum(r.good for r in self.rounds),
            "bad": sum(r.bad for r in self.rounds),
            "skipped": sum(r.skipped for r in self.rounds),
            "rounds": [r.to_dict() for r in self.rounds],
        }


def round_sizes(n: int, rounds: int) -> list[int]:
    """``n`` split into ``rounds`` near-equal parts, larger ones first (no empty round).

    >>> round_sizes(10, 4)
    [3, 3, 2, 2]
    """
    rounds = max(1, min(int(rounds), int(n)))
    base, extra = divmod(int(n), rounds)
    return [base + (1 if k < extra else 0) for k in range(rounds)]


def _progress_bar(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="label", disable=not enabled, leave=True, dynamic_ncols=True)


def _choose(
    selection: str,
    remaining: torch.Tensor,
    k: int,
    noisy: torch.Tensor,
    outputs: torch.Tensor,
    labelled: LabelledSamples | None,
    fit_ensemble: Callable[[LabelledSamples], RewardEnsemble] | None,
    candidates: int,
    diversity_pool: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, str, str]:
    """``(pool indices, selection used, note)`` for one round."""
    from hfrl.rewards.selection import DisagreementSelector, RandomSelector

    note = ""
    if selection == "active" and labelled is not None and fit_ensemble is not None:
        try:
            ensemble = fit_ensemble(labelled)
        except DataError as exc:  # e.g. every label so far says the same: nothing to disagree about
            note = f"random: no ensemble yet ({exc})"
        else:
            pool = remaining
            if 0 < candidates < len(remaining):
                pool = remaining[torch.randperm(len(remaining), generator=generator)[:candidates]]
            pick = DisagreementSelector(ensemble, diversity_pool).select(
                noisy[pool], outputs[pool], k, generator
            )
            return pool[pick], DISAGREEMENT, note
    pick = RandomSelector().select(noisy[remaining], outputs[remaining], k, generator)
    return remaining[pick], RANDOM, note


def _wait_for_people(
    queue: FeedbackQueue, query_id: int, deadline: float | None, bar: Any, base: int, poll: float = 0.5
) -> Any:
    """Block until people answered ``query_id``, moving the progress bar as they do."""
    while True:
        result = queue.poll(query_id)
        answered = sum(1 for item in queue.result(query_id).items if item.votes)
        bar.n = base + answered
        bar.refresh()
        if result is not None:
            return result
        if deadline is not None and time.monotonic() >= deadline:
            raise FeedbackTimeoutError(
                f"query {query_id} was not labelled in time ({answered} of its items answered); "
                "wait longer (hfrl demo --human-timeout), or answer the rest with 'hfrl label simulate'"
            )
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


def collect_labels(
    queue: FeedbackQueue | FeedbackStore | str | Path,
    noisy: torch.Tensor,
    outputs: torch.Tensor,
    *,
    n_labels: int,
    clean: torch.Tensor | None = None,
    classes: torch.Tensor | None = None,
    selection: str = "active",
    rounds: int = 4,
    fit_ensemble: Callable[[LabelledSamples], RewardEnsemble] | None = None,
    labeler: Labeler | None = None,
    candidates: int = 1000,
    diversity_pool: float = 2.0,
    timeout: float | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    domain: str | None = "target",
    progress: bool = True,
    on_round: Callable[[LabelRound], None] | None = None,
) -> CollectedLabels:
    """Ask about ``n_labels`` of a pool of outputs, in rounds, and return the answers.

    Each output is asked about at most once. Round 1 is random; with ``selection="active"`` later rounds
    ask about the unasked outputs on which ``fit_ensemble(labels so far)`` disagrees most (of a random
    subset of ``candidates``, thinned for variety by ``diversity_pool``); a round whose labels so far hold
    one class only falls back to random. Skipped items count as asked but give no label.

    Args:
        queue: The feedback queue (or a store, or the path of its database, created when missing).
        noisy: ``(N, C, H, W)`` noisy inputs of the pool.
        outputs: ``(N, C, H, W)`` the generator's outputs for them.
        n_labels: Outputs to ask about in all (at most ``N``).
        clean: ``(N, C, H, W)`` clean images, stored for the synthetic labeler only (required with
            ``labeler``; never served to people).
        classes: ``(N,)`` classes.
        selection: ``active`` or ``random``.
        rounds: Rounds the budget is split into.
        fit_ensemble: ``labels -> RewardEnsemble`` for active rounds (e.g.
            :func:`hfrl.rewards.fit.ensemble_fitter`); required for ``active``.
        labeler: Answer with this synthetic labeler in-process (:func:`~hfrl.feedback.simulate`); ``None``
            waits for people (on the labelling page, or ``hfrl label simulate`` in another process).
        candidates: Unasked outputs scored per active round (0: all).
        diversity_pool: See :class:`~hfrl.rewards.selection.UncertaintySelector`.
        timeout: Most seconds to wait for answers, all rounds together (``None``: forever).
        seed: Seeds every random choice.
        checkpoint: Generator checkpoint recorded with the samples.
        domain: Domain name recorded with the samples.
        progress: Show a progress bar (labels answered so far).
        on_round: Called after each round with its :class:`LabelRound`.

    Returns:
        The rounds, with the pool indices asked and the answers.

    Raises:
        ConfigError: for an unknown selection or ``active`` without ``fit_ensemble``.
        DataError: for mismatched tensors or a budget larger than the pool.
        FeedbackTimeoutError: when people do not answer within ``timeout``.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    if selection == "active" and fit_ensemble is None:
        raise ConfigError("active selection needs fit_ensemble (labels -> reward ensemble)")
    n = noisy.shape[0]
    if outputs.shape != noisy.shape or (clean is not None and clean.shape != noisy.shape):
        raise DataError(
            f"noisy, outputs and clean must have the same shape, got {tuple(noisy.shape)}, "
            f"{tuple(outputs.shape)}, {None if clean is None else tuple(clean.shape)}"
        )
    if not 0 <= n_labels <= n:
        raise DataError(f"cannot ask about {n_labels} outputs of a pool of {n}")
    if labeler is not None and clean is None:
        raise DataError("the synthetic labeler needs the clean images (clean=...)")
    if n_labels == 0:
        return CollectedLabels(())
    if not isinstance(queue, FeedbackQueue):
        with FeedbackQueue(queue) as owned:  # opened here, so closed here
            return collect_labels(
                owned, noisy, outputs, n_labels=n_labels, clean=clean, classes=classes, selection=selection,
                rounds=rounds, fit_ensemble=fit_ensemble, labeler=labeler, candidates=candidates,
                diversity_pool=diversity_pool, timeout=timeout, seed=seed, checkpoint=checkpoint, domain=domain,
                progress=progress, on_round=on_round,
            )  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    asked = torch.zeros(n, dtype=torch.bool)
    done: list[LabelRound] = []
    sizes = round_sizes(n_labels, rounds)
    bar = _progress_bar(n_labels, progress, "labels")
    try:
        for number, k in enumerate(sizes, start=1):
            start = time.perf_counter()
            so_far = CollectedLabels(tuple(done))
            labelled = so_far.samples(noisy, outputs) if len(so_far) else None
            bar.set_postfix_str(f"round {number}/{len(sizes)}: choosing", refresh=True)
            idx, used, note = _choose(
                selection, torch.nonzero(~asked).flatten(), k, noisy, outputs, labelled, fit_ensemble,
                candidates, diversity_pool, generator,
            )  # fmt: skip
            asked[idx] = True
            qid = queue.enqueue(
                noisy[idx], outputs[idx],
                clean=None if clean is None else clean[idx],
                classes=None if classes is None else classes[idx],
                checkpoint=checkpoint, round=number, domain=domain, note=f"{used} round {number}",
            )  # fmt: skip
            bar.set_postfix_str(f"round {number}/{len(sizes)}: {used}", refresh=True)
            if labeler is not None:
                simulate(queue.store, labeler, batch_size=64)
                result = queue.poll(qid)
                if result is None:
                    raise FeedbackError(f"the synthetic labeler left query {qid} unanswered")
            else:
                result = _wait_for_people(queue, qid, deadline, bar, sum(sizes[: number - 1]))
            values = result.values  # (k,) 1 good, 0 bad, nan skipped, in query order = idx order
            record = LabelRound(number, qid, used, idx, values, time.perf_counter() - start, note)
            done.append(record)
            bar.n = sum(sizes[:number])
            bar.refresh()
            if on_round is not None:
                on_round(record)
        bar.set_postfix_str(f"{sum(r.good for r in done)} good, {sum(r.bad for r in done)} bad", refresh=True)
    finally:
        bar.close()
    return CollectedLabels(tuple(done))


__all__ = [
    "SELECTIONS",
    "CollectedLabels",
    "LabelRound",
    "collect_labels",
    "round_sizes",
]
