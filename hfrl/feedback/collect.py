"""Collect labels in rounds through the feedback queue: what to ask, asking, waiting for the answers.

:func:`collect_labels` splits a label budget into rounds. Each round chooses outputs from a pool —
the first at random, later ones (``selection="active"``) where a small reward ensemble trained on the
labels so far disagrees most (Christiano et al. 2017; Yoon et al., arXiv 2307.02770) — enqueues them as
one query in the :class:`~hfrl.feedback.FeedbackQueue` and waits for the answers. The synthetic labeler
answers in-process through :func:`~hfrl.feedback.simulate` (the same store functions the labelling page
uses); people answer on the page, which :func:`label_server` serves from a background thread.

:func:`prepare_reward` is the whole "labels -> reward model" half of the seed paper's pipeline on the
shipped task: generate outputs of the source generator on noisy target-domain images, train the
label-free denoiser, collect labels, fit the reward model from the store, save it. ``hfrl demo`` and
the benchmarks call it; its ``n_labels=0`` gives the label-free similarity reward (no store, no
questions), the baseline of a labels-versus-quality curve.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hfrl.errors import ConfigError, DataError
from hfrl.feedback.engine import DEFAULT_DB_NAME
from hfrl.feedback.errors import FeedbackError
from hfrl.feedback.queue import FeedbackQueue, FeedbackTimeoutError
from hfrl.feedback.simulate import Labeler, simulate
from hfrl.feedback.store import FeedbackStore

if TYPE_CHECKING:  # reward models pull in torchmetrics; the feedback package does not need them to load
    from hfrl.feedback.server import LabelServer
    from hfrl.rewards import RewardEnsemble, RewardModel
    from hfrl.rewards.records import LabelledSamples

RANDOM, DISAGREEMENT = "random", "disagreement"
SELECTIONS = ("active", "random")
StageHook = Callable[[str], AbstractContextManager[Any]]
"""``stage(name)`` -> a context manager around one stage of work (``hfrl demo`` times and shows them)."""


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
        """The labelled rows as :class:`~hfrl.rewards.LabelledSamples` (the pool's ``(N, 1, H, W)`` tensors)."""
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
        noisy: ``(N, 1, H, W)`` noisy inputs of the pool.
        outputs: ``(N, 1, H, W)`` the generator's outputs for them.
        n_labels: Outputs to ask about in all (at most ``N``).
        clean: ``(N, 1, H, W)`` clean images, stored for the synthetic labeler only (required with
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


# ------------------------------------------------------------------------------------- people


def open_in_browser(url: str) -> bool:
    """Open ``url`` in a desktop browser where there is a desktop; returns whether it tried.

    On a headless machine :mod:`webbrowser` would pick a text browser inside this terminal, so nothing is
    opened unless a display is available (macOS and Windows always have one).
    """
    if not (
        sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    import webbrowser

    try:
        return bool(webbrowser.open(url, new=2))
    except Exception:  # noqa: BLE001 - a browser that fails to start must not stop the run
        return False


@contextlib.contextmanager
def label_server(
    db: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
    start_timeout: float = 30.0,
) -> Iterator[LabelServer]:
    """Serve the labelling page from a background thread for the duration of a ``with`` block.

    Args:
        db: The feedback database.
        host: Address to bind (beyond loopback a token is required and generated).
        port: Port (0 picks a free one).
        token: Token for non-loopback addresses.
        open_browser: Try :func:`open_in_browser` once the page is up.
        announce: Where the URL is printed.
        start_timeout: Seconds to wait for the server to accept connections.

    Yields:
        The running :class:`~hfrl.feedback.server.LabelServer` (``url`` is the page).

    Raises:
        FeedbackError: for an unusable address or a server that does not start.
    """
    from hfrl.feedback.server import prepare_server

    server = prepare_server(db, host, port, token=token, announce=announce)
    thread = threading.Thread(target=server.run, name="hfrl-label-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.stop()
        thread.join(timeout=5)
        raise FeedbackError(f"the labelling server on {host}:{port} did not start")
    if open_browser and open_in_browser(server.url):
        announce(f"opened {server.url} in a browser")
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)


# ------------------------------------------------------------------------------------- the shipped task


@dataclass(frozen=True)
class LabelPool:
    """Outputs that may be put to labelers, with what only the synthetic labeler and benchmarks see.

    Attributes:
        noisy: ``(N, 1, H, W)`` noisy target-domain train images.
        outputs: ``(N, 1, H, W)`` the generator's outputs for them.
        clean: ``(N, 1, H, W)`` clean images (synthetic labeler and benchmark numbers only).
        classes: ``(N,)`` int64 classes.
    """

    noisy: torch.Tensor
    outputs: torch.Tensor
    clean: torch.Tensor
    classes: torch.Tensor

    def __len__(self) -> int:
        return int(self.noisy.shape[0])


def make_label_pool(
    generator: torch.nn.Module, images: Any, noise: Any, *, size: int = 0, seed: int = 0
) -> LabelPool:
    """Noisy images, corrupted with a seeded generator, and the generator's outputs for them.

    Args:
        generator: The generator (on any device).
        images: An :class:`~hfrl.data.ImageSet` (clean images and labels).
        noise: A noise model (``noise(clean, torch_generator)``).
        size: Keep a seeded random subset of this many images (0: all).
        seed: Seeds the subset and the noise.
    """
    from hfrl.evaluation import generate

    g = torch.Generator().manual_seed(seed)
    if 0 < size < len(images):
        images = images.subset(torch.sort(torch.randperm(len(images), generator=g)[:size]).values)
    noisy = noise(images.images, g)
    return LabelPool(noisy, generate(generator, noisy), images.images, images.labels.clone())


@dataclass
class RewardInfo:
    """What :func:`prepare_reward` did, for reports and benchmarks.

    Attributes:
        model: The reward model (or ensemble), in eval mode.
        checkpoint: Its checkpoint (``OUT/reward/model.safetensors``).
        pool: The outputs labels could be asked about.
        labels: The rounds of questions (``None`` with 0 labels).
        labeler: ``synthetic``, ``human`` or ``none``.
        db: The feedback database (``None`` with 0 labels).
        denoiser: The label-free denoiser's training summary (``images``, ``steps``, ``loss``, ``seconds``).
        fit: ``report.json`` of the reward fit (``None`` with 0 labels).
        agreement: The reward (>= 0.5 read as good) against the independent evaluator on pool outputs
            nobody was asked about: ``n``, ``accuracy``, ``auc``, ``ece``, ... (benchmark-only: it reads
            the clean images; empty when the dataset is not digits and no evaluator checkpoint is given).
        seconds: Wall time per part (``setup``, ``denoiser``, ``labels``, ``reward``).
    """

    model: RewardModel
    checkpoint: Path
    pool: LabelPool
    labels: CollectedLabels | None
    labeler: str
    db: Path | None
    denoiser: dict[str, Any]
    fit: dict[str, Any] | None
    agreement: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        return {
            "checkpoint": str(self.checkpoint),
            "db": None if self.db is None else str(self.db),
            "labeler": self.labeler,
            "pool": len(self.pool),
            "labels": None if self.labels is None else self.labels.to_dict(),
            "denoiser": self.denoiser,
            "fit": self.fit,
            "agreement_with_evaluator": self.agreement,
            "seconds": self.seconds,
        }


def _agreement_with_evaluator(
    model: RewardModel,
    pool: LabelPool,
    asked: torch.Tensor | None,
    seed: int,
    device: torch.device,
    n: int = 1000,
    evaluator: str | Path | None = None,
) -> dict[str, float]:
    """Benchmark-only: the reward (>= 0.5 read as good) against the evaluator on up to ``n`` unasked outputs."""
    from hfrl.judges import Evaluator
    from hfrl.rewards.metrics import binary_report

    rest = torch.ones(len(pool), dtype=torch.bool)
    if asked is not None:
        rest[asked] = False
    idx = torch.nonzero(rest).flatten()
    idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed + 2000))[:n]]
    if len(idx) == 0:
        return {"n": 0}
    verdict = Evaluator.from_pretrained(evaluator, device=device).is_good(
        pool.outputs[idx], pool.clean[idx], pool.classes[idx]
    )
    return binary_report(model.predict_th(pool.noisy[idx], pool.outputs[idx]), verdict.float())


@contextlib.contextmanager
def _timed(stage: StageHook | None, name: str, seconds: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    with stage(name) if stage is not None else contextlib.nullcontext():
        yield
    seconds[name] = time.perf_counter() - start


def prepare_reward(
    out_dir: str | Path,
    *,
    n_labels: int = 200,
    seed: int = 0,
    selection: str = "active",
    rounds: int = 4,
    generator: str | Path | torch.nn.Module | None = None,
    human: bool = False,
    task: str | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    source_classes: tuple[int, ...] | None = None,
    target_classes: tuple[int, ...] | None = None,
    noise: str | None = None,
    noise_level: float | None = None,
    pool: int = 0,
    candidates: int = 1000,
    ensemble: int = 3,
    reward_members: int = 1,
    denoiser_steps: int = 400,
    denoiser_radius: int = 0,
    denoiser_stride: int = 1,
    reward_steps: int = 150,
    reward_lr: float = 0.05,
    monotone: bool = True,
    flip_rate: float = 0.0,
    labeler: str | Path | None = None,
    evaluator: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    timeout: float | None = None,
    device: str = "auto",
    progress: bool = True,
    stage: StageHook | None = None,
    announce: Callable[[str], None] = print,
) -> tuple[Path, RewardInfo]:
    """The shipped task's store -> labels -> reward model, written under ``out_dir``.

    1. ``setup``: outputs of the generator on ``pool`` noisy target-domain train images.
    2. ``denoiser``: the label-free Noise2Self denoiser on those noisy images (no labels, no clean images).
    3. ``labels``: ``n_labels`` answers in ``rounds`` through ``OUT/feedback.sqlite``: from the synthetic
       labeler, or with ``human`` from a person on the labelling page (served at ``host:port`` from a
       background thread until the labels are in; ``timeout`` bounds the wait).
    4. ``reward``: a similarity reward (an ensemble when ``reward_members`` > 1) fitted on every label in
       the store (:func:`hfrl.rewards.fit.fit_reward_from_store`), saved as ``OUT/reward/model``.

    With ``n_labels=0`` there is no store and no question: the reward is
    :func:`hfrl.rewards.fit.label_free_similarity_reward`, the prior that labels sharpen.

    Args:
        out_dir: Directory for ``feedback.sqlite`` and ``reward/`` (created).
        n_labels: Labels to collect (0: the label-free reward).
        seed: Seeds the pool, the denoiser, the label choice and the reward.
        selection: ``active`` or ``random`` (see :func:`collect_labels`).
        rounds: Rounds of questions.
        generator: The source generator: a checkpoint path or a module (default: the shipped one).
        human: Ask a person on the labelling page instead of the synthetic labeler.
        task: Named task (:mod:`hfrl.tasks`) whose settings fill the data arguments left ``None`` and the
            generator (default: the default task).
        dataset: Dataset name.
        data_dir: Folder of torchvision datasets.
        source_classes: Source-domain classes.
        target_classes: Target-domain classes (the pool's).
        noise: Noise spec (see :func:`hfrl.noise.make_noise`).
        noise_level: Noise strength.
        pool: Pool size (0: every target train image).
        candidates: Outputs scored per active round.
        ensemble: Members of the ensembles whose disagreement picks active queries (>= 2).
        reward_members: Members of the final reward (1: a single model on every label).
        denoiser_steps: Noise2Self steps.
        denoiser_radius: Half-width of the denoiser's blind spot (0: one pixel; more for correlated noise).
        denoiser_stride: Pixel-shuffle factor of the denoiser (1: whole images).
        reward_steps: Training steps per reward member.
        reward_lr: Learning rate of each member (the similarity reward's four parameters need ~0.05; the
            CNN default 3e-3 leaves its head near its random start).
        monotone: Keep the signs of the similarity weights (:func:`hfrl.rewards.fit.make_monotone`), in the
            query ensembles and the final reward.
        flip_rate: Synthetic labeler's error rate.
        labeler: Classifier checkpoint of the synthetic labeler (default: the shipped digit classifier).
        evaluator: Classifier checkpoint of the evaluator behind the reported agreement (default: shipped).
        host: Labelling page address (``human``).
        port: Labelling page port (``human``; 0 picks a free one).
        open_browser: Try to open the page in a browser (``human``).
        timeout: Most seconds to wait for people (``None``: forever).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: Show progress bars.
        stage: ``stage(name)`` context manager wrapped around each of the four parts.
        announce: Where messages (the page's URL) go.

    Returns:
        ``(reward checkpoint path, RewardInfo)``.

    Raises:
        ConfigError: for bad settings.
        DataError: for a generator that does not fit the dataset's images.
        FeedbackTimeoutError: when people do not answer in time.
    """
    from hfrl.checkpoint import load_checkpoint
    from hfrl.data import Domains, load_dataset
    from hfrl.device import resolve_device
    from hfrl.judges import DIGIT_DATASETS, SyntheticLabeler, require_judge
    from hfrl.noise import make_noise
    from hfrl.rewards import DenoiserConfig, RewardTrainingConfig, save_reward_model, train_denoiser
    from hfrl.rewards.fit import ensemble_fitter, fit_reward_from_store, label_free_similarity_reward
    from hfrl.tasks import fill_from_task

    names = (
        "dataset",
        "data_dir",
        "source_classes",
        "target_classes",
        "noise",
        "noise_level",
        "labeler",
        "evaluator",
    )
    given = {"dataset": dataset, "data_dir": data_dir, "source_classes": source_classes, "target_classes": target_classes,
             "noise": noise, "noise_level": noise_level, "labeler": labeler, "evaluator": evaluator}  # fmt: skip
    filled = fill_from_task(given, task, names)
    dataset, data_dir, noise, noise_level = (
        filled["dataset"],
        filled["data_dir"],
        filled["noise"],
        filled["noise_level"],
    )
    source_classes, target_classes = filled["source_classes"], filled["target_classes"]
    labeler, evaluator = filled["labeler"], filled["evaluator"]
    if generator is None:
        generator = fill_from_task({"generator": None}, task, ("generator",))["generator"]
    if selection == "active" and n_labels > 0 and ensemble < 2:
        raise ConfigError("active selection needs an ensemble of at least 2 members (ensemble >= 2)")
    if not human and n_labels > 0:
        require_judge(dataset, labeler, "labeler")
    scored = evaluator is not None or dataset in DIGIT_DATASETS  # else no judge for the agreement figure
    out = Path(out_dir)
    if n_labels > 0 and (out / DEFAULT_DB_NAME).exists():
        raise FeedbackError(
            f"{out / DEFAULT_DB_NAME} already exists; prepare_reward collects into a fresh store (use a new directory)"
        )
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    seconds: dict[str, float] = {}

    with _timed(stage, "setup", seconds):
        if isinstance(generator, torch.nn.Module):
            gen, gen_name = generator.to(dev), "in-memory generator"
        else:
            gen, _ = load_checkpoint(generator, kind="generator", device=dev)
            gen_name = str(generator)
        domains = Domains(load_dataset(dataset, data_dir), tuple(source_classes), tuple(target_classes))
        images = domains.target("train")
        size = tuple(gen.config.image_size) if hasattr(gen, "config") else None
        if size is not None and tuple(images.image_shape[1:]) != size:
            raise DataError(
                f"the generator expects {size} images but {dataset} has {tuple(images.image_shape[1:])}"
            )
        label_pool = make_label_pool(gen, images, make_noise(noise, noise_level), size=pool, seed=seed + 1000)
        if n_labels > len(label_pool):
            raise ConfigError(f"cannot ask for {n_labels} labels from a pool of {len(label_pool)} outputs")

    with _timed(stage, "denoiser", seconds):
        den_config = DenoiserConfig(
            steps=denoiser_steps,
            seed=seed,
            device=str(dev),
            radius=denoiser_radius,
            stride=denoiser_stride,
            grid=max(4, 2 * denoiser_radius + 2),
        )
        denoiser, den_info = train_denoiser(label_pool.noisy, den_config)
        den_info = {
            "images": len(label_pool),
            "steps": denoiser_steps,
            "variant": den_config.variant,
            **den_info,
        }

    training = RewardTrainingConfig(steps=reward_steps, lr=reward_lr, seed=seed, device=str(dev))
    reward_dir = out / "reward"
    collected: CollectedLabels | None = None
    db: Path | None = None
    fit_report: dict[str, Any] | None = None
    labeler_name = "none"
    if n_labels == 0:
        with _timed(stage, "reward", seconds):
            model: Any = label_free_similarity_reward(denoiser, label_pool.noisy, label_pool.outputs, seed)
            checkpoint = save_reward_model(
                reward_dir / "model",
                model,
                metadata={"kind": "label-free", "model": "similarity", "seed": seed},
            )
            agreement = (
                _agreement_with_evaluator(model, label_pool, None, seed, dev, evaluator=evaluator)
                if scored
                else {}
            )
    else:
        db = out / DEFAULT_DB_NAME
        with _timed(stage, "labels", seconds), FeedbackQueue(db) as queue:
            fit_ensemble = (
                ensemble_fitter(denoiser, ensemble, training, monotone=monotone)
                if selection == "active"
                else None
            )
            common = {
                "n_labels": n_labels, "clean": label_pool.clean, "classes": label_pool.classes,
                "selection": selection, "rounds": rounds, "fit_ensemble": fit_ensemble,
                "candidates": candidates, "seed": seed, "checkpoint": gen_name, "progress": progress,
            }  # fmt: skip
            if human:
                labeler_name = "human"
                with label_server(db, host, port, open_browser=open_browser, announce=announce) as server:
                    announce(f"label {n_labels} outputs at {server.url} (good: g, bad: b; ? for help)")
                    collected = collect_labels(
                        queue, label_pool.noisy, label_pool.outputs, timeout=timeout, **common
                    )
            else:
                labeler_name = "synthetic"
                judge = SyntheticLabeler.from_pretrained(
                    labeler, device=dev, flip_rate=flip_rate, seed=seed, labeler_id="synthetic"
                )
                collected = collect_labels(
                    queue, label_pool.noisy, label_pool.outputs, labeler=judge, **common
                )
        if len(collected) == 0 or collected.values.min() == collected.values.max():
            raise DataError(
                f"the {len(collected)} labels collected hold one class only (or none); a reward model needs "
                "good and bad examples"
            )
        with _timed(stage, "reward", seconds):
            fit = fit_reward_from_store(
                db, reward_dir, ensemble=reward_members, val_fraction=0.0, training=training, denoiser=denoiser,
                seed=seed, device=dev, monotone=monotone,
            )  # fmt: skip
            model, checkpoint, fit_report = fit.model, fit.checkpoint, fit.report
            agreement = (
                _agreement_with_evaluator(model, label_pool, collected.asked, seed, dev, evaluator=evaluator)
                if scored
                else {}
            )

    info = RewardInfo(
        model=model,
        checkpoint=Path(checkpoint),
        pool=label_pool,
        labels=collected,
        labeler=labeler_name,
        db=db,
        denoiser={k: v for k, v in den_info.items() if not (isinstance(v, float) and math.isnan(v))},
        fit=fit_report,
        agreement=agreement,
        seconds=seconds,
    )
    return Path(checkpoint), info


__all__ = [
    "CollectedLabels",
    "LabelPool",
    "LabelRound",
    "RewardInfo",
    "collect_labels",
    "label_server",
    "make_label_pool",
    "open_in_browser",
    "prepare_reward",
    "round_sizes",
]
