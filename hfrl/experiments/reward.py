"""Reward preparation: the whole "labels -> reward model" half of the seed paper's pipeline.

:func:`prepare_reward` runs it on the shipped task: generate outputs of the source generator on noisy
target-domain images, train the label-free denoiser, collect labels
(:func:`~hfrl.experiments.labels.collect_labels`), fit the reward model from the store, save it.
``hfrl demo`` and the benchmarks call it; its ``n_labels=0`` gives the label-free similarity reward (no
store, no questions), the baseline of a labels-versus-quality curve.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hfrl.errors import ConfigError, DataError
from hfrl.experiments.labels import CollectedLabels, collect_labels
from hfrl.feedback.collect import label_server
from hfrl.feedback.engine import DEFAULT_DB_NAME
from hfrl.feedback.errors import FeedbackError
from hfrl.feedback.queue import FeedbackQueue
from hfrl.names import REWARD_REFERENCES

if TYPE_CHECKING:  # reward models pull in torchmetrics: imported where they are used
    from hfrl.rewards import RewardModel


StageHook = Callable[[str], AbstractContextManager[Any]]
"""``stage(name)`` -> a context manager around one stage of work (``hfrl demo`` times and shows them)."""


@dataclass(frozen=True)
class LabelPool:
    """Outputs that may be put to labelers, with what only the synthetic labeler and benchmarks see.

    Attributes:
        noisy: ``(N, C, H, W)`` noisy target-domain train images.
        outputs: ``(N, C, H, W)`` the generator's outputs for them.
        clean: ``(N, C, H, W)`` clean images (synthetic labeler and benchmark numbers only).
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


def _n2s_reference(
    noisy: torch.Tensor, steps: int, radius: int, stride: int, seed: int, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A Noise2Self denoiser trained on ``noisy`` and its training summary."""
    from hfrl.rewards import DenoiserConfig, train_denoiser

    config = DenoiserConfig(
        steps=steps, seed=seed, device=str(device), radius=radius, stride=stride, grid=max(4, 2 * radius + 2)
    )
    denoiser, info = train_denoiser(noisy, config)
    return denoiser, {"images": int(noisy.shape[0]), "steps": steps, "variant": config.variant, **info}


def _classical_reference(domains: Any, noise: Any, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The classical denoiser tuned on the source domain's validation pairs, and what was chosen.

    :func:`hfrl.classical.tune_on_source`: the report's classical baseline is the same denoiser.

    Args:
        domains: The run's :class:`~hfrl.data.Domains`.
        noise: The run's noise model.
        seed: The run's seed.
    """
    from hfrl.classical import tune_on_source

    start = time.perf_counter()
    choice = tune_on_source(domains, noise, seed)
    d = choice.denoiser
    return d, {
        "variant": f"classical {d.method} {d.value:g}",
        "source_psnr": choice.psnr,
        "seconds": time.perf_counter() - start,
    }


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
    reference: str = "n2s",
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
    2. ``denoiser``: the label-free estimate of the clean inputs that the similarity reward compares
       outputs with (no labels, no clean target image): a Noise2Self denoiser trained on those noisy
       images (``reference="n2s"``), or the classical denoiser tuned on the source domain's noisy/clean
       pairs (``reference="classical"``, :func:`hfrl.classical.tune_on_source`), which suits noise that
       blind-spot self-supervision cannot learn (spatially correlated noise).
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
        reference: The label-free estimate inside the reward (:data:`hfrl.names.REWARD_REFERENCES`):
            ``n2s`` or ``classical``.
        denoiser_steps: Noise2Self steps (``n2s``).
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
    from hfrl.data import Domains, check_image_shape, dataset_name, load_dataset
    from hfrl.device import resolve_device
    from hfrl.judges import (
        DIGIT_DATASETS,
        Evaluator,
        check_judge_shape,
        digit_judge_applies,
        make_labeler,
        require_judge,
    )
    from hfrl.noise import make_noise
    from hfrl.rewards import RewardTrainingConfig, save_reward_model
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
    if reference not in REWARD_REFERENCES:
        raise ConfigError(
            f"unknown reward reference {reference!r}; expected one of {', '.join(REWARD_REFERENCES)}"
        )
    if selection == "active" and n_labels > 0 and ensemble < 2:
        raise ConfigError("active selection needs an ensemble of at least 2 members (ensemble >= 2)")
    data = load_dataset(dataset, data_dir)  # its shape chooses the judges, before any work
    shape, name = data.image_shape, dataset_name(dataset)
    if not human and n_labels > 0 and (labeler is not None or digit_judge_applies(shape)):
        require_judge(name, labeler, "labeler")  # images no shipped judge reads get a classifier-free one
    # else no judge for the agreement figure
    scored = evaluator is not None or (name in DIGIT_DATASETS and digit_judge_applies(shape))
    if evaluator is not None:  # a judge of other images than these fails here, in one line
        check_judge_shape(Evaluator.from_pretrained(evaluator), shape, "the evaluator")
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
        domains = Domains(data, tuple(source_classes), tuple(target_classes))
        images = domains.target("train")
        if hasattr(gen, "config"):  # a generator built for other images fails here, in one line
            shape = (int(getattr(gen.config, "channels", 1)), *gen.config.image_size)
            check_image_shape(shape, images, "the generator")
        label_pool = make_label_pool(gen, images, make_noise(noise, noise_level), size=pool, seed=seed + 1000)
        if n_labels > len(label_pool):
            raise ConfigError(f"cannot ask for {n_labels} labels from a pool of {len(label_pool)} outputs")

    with _timed(stage, "denoiser", seconds):
        if reference == "classical":
            denoiser, den_info = _classical_reference(domains, make_noise(noise, noise_level), seed)
        else:
            denoiser, den_info = _n2s_reference(
                label_pool.noisy, denoiser_steps, denoiser_radius, denoiser_stride, seed, dev
            )

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
                judge = make_labeler(
                    name, labeler, shape, dev, flip_rate=flip_rate, seed=seed, labeler_id="synthetic"
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
    "LabelPool",
    "RewardInfo",
    "StageHook",
    "make_label_pool",
    "prepare_reward",
]
