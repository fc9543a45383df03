"""Fit a reward model to the labels in a feedback store: the reusable core of ``hfrl reward train``.

:func:`fit_reward_from_store` reads the store's good/bad labels (or pairs, or HERO marks), holds out a
validation split, trains one model or an ensemble, validates it against the labels and — where the store
keeps the clean reference images, as it does for synthetic labels — against the independent evaluator,
and writes ``model.safetensors`` + ``model.json``, ``report.json``, ``report.md`` and ``metrics.csv``.

Also here: :func:`ensemble_fitter`, the small reward ensembles whose disagreement picks active queries
(:func:`hfrl.experiments.labels.collect_labels`), and :func:`label_free_similarity_reward`, the similarity
reward before any label (what a run with 0 labels fine-tunes against).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from hfrl.device import resolve_device
from hfrl.errors import ConfigError, DataError
from hfrl.rewards.config import COMBINES, KINDS, MODELS
from hfrl.rewards.denoiser import DenoiserConfig, train_denoiser
from hfrl.rewards.ensemble import RewardEnsemble
from hfrl.rewards.metrics import binary_report, pairwise_report
from hfrl.rewards.models import RewardModel, RewardModelConfig, SimilarityReward
from hfrl.rewards.records import LabelledSamples, PreferencePairs, TripletFeedback, check_trainable
from hfrl.rewards.training import (
    RESAMPLING,
    RewardTrainingConfig,
    TrainResult,
    make_reward_model,
    train_ensemble,
    train_reward_model,
)

NEEDS_DENOISER = ("similarity", "denoised")
"""Models that hold a self-supervised denoiser."""
LABEL_FREE_WEIGHTS = (1.0, 1.0, -1.0)
"""Head of :func:`label_free_similarity_reward` on the standardised (SSIM, correlation, RMSE) features;
also the signs a monotone similarity head keeps (:func:`make_monotone`) and where its training starts."""


@dataclass
class RewardFit:
    """What :func:`fit_reward_from_store` produced.

    Attributes:
        model: The trained reward model (or ensemble), in eval mode.
        checkpoint: ``OUT/model.safetensors``; ``OUT`` itself loads as a reward checkpoint too.
        report: The content of ``report.json`` (rows, validation, denoiser, training settings, seconds).
        results: One training result per member (loss histories).
        denoiser: The label-free estimator inside the model (``None`` for models without one).
    """

    model: RewardModel
    checkpoint: Path
    report: dict[str, Any]
    results: list[TrainResult] = field(default_factory=list)
    denoiser: nn.Module | None = None


def default_model(kind: str) -> str:
    """The model name used when none is given: ``denoised`` for HERO triplets, else ``similarity``."""
    return "denoised" if kind == "triplet" else "similarity"


def records_image_shape(records: Any) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images in a record of feedback (its first batch of images)."""
    for f in dataclasses.fields(records):
        value = getattr(records, f.name)
        if isinstance(value, torch.Tensor) and value.ndim == 4:
            return tuple(int(v) for v in value.shape[1:])  # type: ignore[return-value]
    raise DataError(f"{type(records).__name__} holds no images")


def split_rows(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` row indices: a seeded random split with at least one row on each side.

    ``fraction == 0`` keeps every row for training and returns an empty validation set.

    Raises:
        DataError: when a split is asked for with fewer than 2 rows.
    """
    if fraction <= 0:
        return torch.arange(n), torch.zeros(0, dtype=torch.long)
    if n < 2:
        raise DataError(f"need at least 2 labelled rows to hold out a validation split, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    return perm[n_val:], perm[:n_val]


def evaluator_verdicts(
    store: Any, ids: list[int], evaluator_path: str | Path | None, device: torch.device
) -> Any:
    """The evaluator's :class:`~hfrl.judges.Judgement` of stored outputs ``ids`` (``None`` without clean images)."""
    from hfrl.feedback import FeedbackError
    from hfrl.judges import Evaluator

    try:
        clean = store.clean_images(ids)
    except FeedbackError:
        return None
    evaluator = Evaluator.from_pretrained(evaluator_path, device=device)
    return evaluator.judge(store.images(ids, "output"), clean, store.sample_classes(ids))


def store_inputs(store: Any) -> torch.Tensor:
    """Every noisy input the store holds, labelled or not: ``(N, C, H, W)``."""
    ids = sorted(
        {
            i
            for q in store.queries()
            for item in store.items(q.id)
            for i in (item.sample_id, item.other_id)
            if i is not None
        }
    )
    return store.images(ids, "input")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the run's summary and validation table."""
    title = f"# Reward model: {report['kind']}, {report['model_name']}"
    if report["ensemble"] > 1:
        title += f", ensemble of {report['ensemble']} ({report['combine']})"
    lines = [
        title,
        "",
        f"- feedback store: `{report['db']}`",
        f"- rows: {report['rows']['train']} train, {report['rows']['val']} validation",
        f"- seed {report['seed']}; {report['seconds']:.1f} s",
    ]
    if report.get("denoiser"):
        den = report["denoiser"]
        lines.append(
            f"- self-supervised denoiser: {den['images']} noisy images, {den['steps']} steps, "
            f"{den['seconds']:.1f} s"
        )
    lines += [
        "",
        "| validation against | n | accuracy | AUC | calibration error (ECE) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, m in report["validation"].items():
        if m is None:
            lines.append(f"| {name} | – | not available | | |")
            continue
        lines.append(
            f"| {name} | {m.get('n', '')} | {_fmt(m.get('accuracy', math.nan))} | {_fmt(m.get('auc', math.nan))} "
            f"| {_fmt(m.get('ece', math.nan))} |"
        )
    if not report["validation"]:
        lines.append("| (no validation split) | | | | |")
    lines += ["", f"Checkpoint: `{report['checkpoint']}`", ""]
    return "\n".join(lines)


class _SignedSoftplus(nn.Module):
    """``weight = signs * softplus(raw)``: each weight keeps its sign (a parametrization of a head)."""

    def __init__(self, signs: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("signs", torch.tensor([signs], dtype=torch.float32))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.signs * F.softplus(raw)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w = (weight * self.signs).clamp(min=1e-4)
        return w + torch.log(-torch.expm1(-w))  # inverse of softplus


def make_monotone(model: RewardModel) -> RewardModel:
    """Constrain a :class:`SimilarityReward` so that being more alike to the denoised input never lowers it.

    The three features (SSIM, correlation, RMSE) are strongly correlated, so an unconstrained logistic
    regression on a few hundred labels often gives one of them the "wrong" sign (e.g. a negative SSIM
    weight beside a large correlation weight). A generator fine-tuned by the reward's gradient then trades
    that feature away: in one run against such a head (fitted on 200 random labels) the evaluator's
    good-rate fell to almost nothing while PSNR rose. Here the head starts at the label-free prior
    :data:`LABEL_FREE_WEIGHTS` and keeps its signs throughout training (weights ``signs * softplus(raw)``).
    Call :func:`finish_monotone` after training to turn the constraint back into plain weights.

    Args:
        model: A similarity reward (other models are returned unchanged).

    Returns:
        The same model, constrained in place.
    """
    if not isinstance(model, SimilarityReward) or parametrize.is_parametrized(model.head, "weight"):
        return model
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([LABEL_FREE_WEIGHTS]))
        model.head.bias.zero_()
    parametrize.register_parametrization(model.head, "weight", _SignedSoftplus(LABEL_FREE_WEIGHTS))
    return model


def finish_monotone(model: RewardModel) -> RewardModel:
    """Replace the sign constraint of :func:`make_monotone` by the weights it reached (for checkpoints)."""
    members = model.members if isinstance(model, RewardEnsemble) else [model]
    for member in members:
        head = getattr(member, "head", None)
        if head is not None and parametrize.is_parametrized(head, "weight"):
            parametrize.remove_parametrizations(head, "weight", leave_parametrized=True)
    return model


def _read_feedback(store: Any, kind: str, min_votes: int, db: Any) -> tuple[Any, list[int], list[int]]:
    """The store's feedback of ``kind`` as a record, with the sample ids of its left / right outputs."""
    if kind == "pairwise":
        pt = store.pair_tensors(min_votes=min_votes)
        if len(pt) == 0:
            raise DataError(f"{db}: no pairwise labels to train on (label some 'pair' queries first)")
        data: Any = PreferencePairs(pt.inputs, pt.left, pt.right, pt.preference)
        return data, pt.left_ids.tolist(), pt.right_ids.tolist()
    rt = store.rating_tensors(min_votes=min_votes)
    if len(rt) == 0:
        raise DataError(f"{db}: no good/bad labels to train on (label some queries first)")
    if kind == "triplet":
        data = TripletFeedback(rt.inputs, rt.outputs, rt.targets, rt.best > 0)
    else:
        data = LabelledSamples(rt.inputs, rt.outputs, rt.targets)
    return data, rt.sample_ids.tolist(), []


def fit_reward_from_store(
    db: str | Path,
    out: str | Path | None,
    *,
    kind: str = "binary",
    model: str | None = None,
    ensemble: int = 1,
    combine: str = "mean",
    resampling: str = "bootstrap",
    val_fraction: float = 0.2,
    min_votes: int = 1,
    training: RewardTrainingConfig | None = None,
    denoiser: nn.Module | None = None,
    denoiser_config: DenoiserConfig | None = None,
    extra_denoiser_images: torch.Tensor | None = None,
    evaluator: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    monotone: bool = False,
) -> RewardFit:
    """Train a reward model (or ensemble) on a feedback store's labels and write it to ``out``.

    Args:
        db: The feedback database (or a run directory holding ``feedback.sqlite``); must exist.
        out: Directory for ``model.*``, ``report.json``, ``report.md`` and ``metrics.csv`` (created once the labels are checked; ``None``: ``runs/reward-TIMESTAMP``).
        kind: ``binary`` (good/bad), ``pairwise`` (Bradley-Terry on pairs) or ``triplet`` (HERO).
        model: A name from :data:`MODELS` (default: :func:`default_model`).
        ensemble: Members (1 = a single model).
        combine: How members combine (``mean`` or ``product``).
        resampling: Each member's rows: ``bootstrap`` or ``disjoint``.
        val_fraction: Share of rows held out for validation, in ``[0, 1)``; 0 trains on every row and
            skips validation.
        min_votes: Leave out rows with fewer votes.
        training: Training settings (default :class:`RewardTrainingConfig` with ``seed`` and ``device``).
        denoiser: The label-free estimator to put inside models that need one: a trained
            self-supervised denoiser or a :class:`~hfrl.classical.ClassicalDenoiser`; a self-supervised
            denoiser is trained here (on the store's noisy inputs plus ``extra_denoiser_images``) when
            ``None``.
        denoiser_config: Settings for that training (default :class:`DenoiserConfig` with ``seed``).
        extra_denoiser_images: ``(M, C, H, W)`` further noisy images for the denoiser (no labels, no
            clean images), e.g. target-domain images drawn as the environment draws them.
        evaluator: Evaluator classifier checkpoint for validation (default: the shipped one).
        seed: Seeds the split, the initialisation and training.
        device: Where to train.
        monotone: Keep the signs of a similarity reward's weights (see :func:`make_monotone`); advisable
            whenever a generator is fine-tuned by the reward's gradient.

    Returns:
        A :class:`RewardFit`.

    Raises:
        ConfigError: for an unknown kind, model, combination or resampling, or a model that cannot learn
            from ``kind``.
        DataError: for a store without usable feedback of that kind.
    """
    from hfrl.feedback import FeedbackStore
    from hfrl.runs import CSVLogger, make_run_dir, write_json

    model = model or default_model(kind)
    if kind not in KINDS:
        raise ConfigError(f"unknown feedback kind {kind!r}; expected one of {', '.join(KINDS)}")
    if model not in MODELS:
        raise ConfigError(f"unknown reward model {model!r}; expected one of {', '.join(MODELS)}")
    if kind == "triplet" and model == "similarity":
        raise ConfigError(
            "triplet feedback trains an embedding network; use model output, pair, residual or denoised"
        )
    if combine not in COMBINES or resampling not in RESAMPLING or ensemble < 1:
        raise ConfigError(f"ensemble must be >= 1, combine one of {COMBINES}, resampling one of {RESAMPLING}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    device = resolve_device(device)
    start = time.perf_counter()

    with FeedbackStore(db, readonly=True) as store:
        data, ids_left, ids_right = _read_feedback(store, kind, min_votes, db)
        train_idx, val_idx = split_rows(len(data), val_fraction, seed)
        train, val = data.subset(train_idx), data.subset(val_idx)
        if kind != "pairwise":  # before any work (the denoiser alone takes tens of seconds)
            check_trainable(data, f"{db}")
            check_trainable(
                train,
                f"{db}: the training split ({len(train)} of {len(data)} labels; {len(val)} held out for "
                "validation, see val_fraction)",
            )
        val_left = [ids_left[i] for i in val_idx.tolist()]
        val_right = [ids_right[i] for i in val_idx.tolist()] if ids_right else []
        verdict_left = evaluator_verdicts(store, val_left, evaluator, device) if val_left else None
        verdict_right = evaluator_verdicts(store, val_right, evaluator, device) if val_right else None
        needs_denoiser = model in NEEDS_DENOISER and denoiser is None
        inputs = store_inputs(store) if needs_denoiser else None

    denoiser_info: dict[str, Any] | None = None
    if inputs is not None:
        images = inputs
        if extra_denoiser_images is not None and len(extra_denoiser_images):
            if extra_denoiser_images.shape[1:] != inputs.shape[1:]:
                raise DataError(
                    f"denoiser images are {tuple(extra_denoiser_images.shape[2:])} but the store's are "
                    f"{tuple(inputs.shape[2:])}"
                )
            images = torch.cat([inputs, extra_denoiser_images])
        den_config = denoiser_config or DenoiserConfig(seed=seed, device=str(device))
        denoiser, info = train_denoiser(images, den_config)
        denoiser_info = {"images": int(images.shape[0]), "steps": den_config.steps, **info}
    arch, channels = MODELS[model]
    if kind == "triplet":
        arch = "embedding"
    c, h, w = records_image_shape(data)  # the model is built for the store's images
    model_config = RewardModelConfig(arch=arch, inputs=channels, image_size=(h, w), channels=c)
    config = training or RewardTrainingConfig(seed=seed, device=str(device))
    member_denoiser = denoiser if model in NEEDS_DENOISER else None

    def member(s: int) -> RewardModel:
        built = make_reward_model(model_config, s, denoiser=member_denoiser)
        return make_monotone(built) if monotone else built

    if ensemble > 1:
        reward, results = train_ensemble(
            train, ensemble, config=config, resampling=resampling, combine=combine, make_member=member
        )
    else:
        result = train_reward_model(member(seed), train, config)
        reward, results = result.model, [result]
    finish_monotone(reward)

    validation = _validate(reward, kind, val, verdict_left, verdict_right) if len(val) else {}
    out = make_run_dir(out, "reward")
    meta = {
        "kind": kind,
        "model": model,
        "db": str(db),
        "seed": seed,
        "monotone": monotone,
        "validation": validation,
    }
    checkpoint = _save(out / "model", reward, meta)
    logger = CSVLogger(out / "metrics.csv")
    for member, r in enumerate(results):
        for row in r.history:
            logger.log(
                {"member": member, **{k: row.get(k, "") for k in ("step", "loss", "loss/main", "loss/aux")}}
            )
    report = {
        "kind": kind,
        "model_name": model,
        "db": str(db),
        "ensemble": ensemble,
        "combine": combine if ensemble > 1 else None,
        "monotone": monotone,
        "seed": seed,
        "rows": {"train": len(train), "val": len(val)},
        "model": model_config.to_dict(),
        "denoiser": denoiser_info,
        "training": asdict(config),
        "validation": validation,
        "seconds": time.perf_counter() - start,
        "checkpoint": str(checkpoint),
    }
    write_json(out / "report.json", report)
    (out / "report.md").write_text(report_markdown(report))
    return RewardFit(reward, checkpoint, report, results, member_denoiser)


def _validate(
    model: RewardModel, kind: str, val: Any, verdict_left: Any, verdict_right: Any
) -> dict[str, Any]:
    """Validation reports against the labels and, where available, the evaluator."""
    validation: dict[str, Any] = {}
    if kind == "pairwise":
        ra = model.predict_th(val.noisy, val.left)
        rb = model.predict_th(val.noisy, val.right)
        validation["labels"] = pairwise_report(ra, rb, val.preference)
        if verdict_left is not None and verdict_right is not None:
            ql, qr = verdict_left.quality, verdict_right.quality
            pref = torch.where((ql - qr).abs() < 1e-6, torch.full_like(ql, 0.5), (ql > qr).float())
            validation["evaluator (pairs)"] = pairwise_report(ra, rb, pref)
            scores = torch.cat([ra, rb])
            good = torch.cat([verdict_left.good, verdict_right.good]).float()
            validation["evaluator (good/bad)"] = binary_report(scores, good)
        else:
            validation["evaluator"] = None
    else:
        prob = model.predict_th(val.noisy, val.output)
        validation["labels"] = binary_report(prob, val.label)
        validation["evaluator"] = (
            binary_report(prob, verdict_left.good.float()) if verdict_left is not None else None
        )
    return validation


def _save(path: Path, model: RewardModel, metadata: dict[str, Any]) -> Path:
    from hfrl.rewards import save_reward_model

    return save_reward_model(path, model, metadata=metadata)


def ensemble_fitter(
    denoiser: nn.Module,
    members: int = 3,
    config: RewardTrainingConfig | None = None,
    combine: str = "mean",
    monotone: bool = False,
) -> Callable[[LabelledSamples], RewardEnsemble]:
    """A function that trains a similarity-reward ensemble on the labels so far (for active selection).

    Args:
        denoiser: The label-free estimator every member holds (shared, frozen): a trained
            self-supervised denoiser or a classical one.
        members: Ensemble size (2 or more, or the disagreement is always 0).
        config: Training settings of each member (member ``i`` uses ``seed + i``).
        combine: ``mean`` or ``product``.
        monotone: Keep the signs of each member's weights (see :func:`make_monotone`).

    Returns:
        ``labels -> RewardEnsemble`` (raises :class:`~hfrl.errors.DataError` for one-class labels).
    """
    if members < 2:
        raise ConfigError(f"disagreement needs an ensemble of at least 2 members, got {members}")
    config = config or RewardTrainingConfig()
    model_config = RewardModelConfig(arch="similarity")

    def member(s: int) -> RewardModel:
        built = make_reward_model(model_config, s, denoiser=denoiser)
        return make_monotone(built) if monotone else built

    def fit(labels: LabelledSamples) -> RewardEnsemble:
        ensemble, _ = train_ensemble(labels, members, config=config, combine=combine, make_member=member)
        return finish_monotone(ensemble)  # type: ignore[return-value]

    return fit


@torch.no_grad()
def label_free_similarity_reward(
    denoiser: nn.Module, noisy: torch.Tensor, outputs: torch.Tensor, seed: int = 0
) -> SimilarityReward:
    """The similarity reward before any label: a fixed head on features standardised on unlabelled pairs.

    ``logit = z_ssim + z_corr - z_rmse`` (:data:`LABEL_FREE_WEIGHTS`, bias 0), with each feature
    standardised over the given (noisy, output) pairs: an output scores 0.5 when it is as alike to the
    denoised input as the average output, more when it is more alike. This is the prior that labels
    then sharpen; ``scripts/bench_reward.py`` (``bench-results/reward.md``) measures how well SSIM alone
    ranks outputs.

    Args:
        denoiser: The label-free estimator (a trained self-supervised denoiser or a classical one).
        noisy: ``(N, C, H, W)`` unlabelled noisy inputs (at least 2).
        outputs: ``(N, C, H, W)`` the generator's outputs for them.
        seed: Initialisation seed (the head is overwritten; kept for symmetry with trained models).

    Returns:
        A :class:`SimilarityReward` in eval mode, on the CPU.
    """
    if noisy.shape[0] < 2:
        raise DataError("the label-free reward standardises its features over at least 2 outputs")
    model = make_reward_model(RewardModelConfig(arch="similarity"), seed, denoiser=denoiser)
    assert isinstance(model, SimilarityReward)
    denoised = torch.cat([model.denoise(chunk) for chunk in noisy.split(512)])  # type: ignore[misc]
    model.fit_stats(outputs, denoised)
    model.head.weight.copy_(torch.tensor([LABEL_FREE_WEIGHTS]))
    model.head.bias.zero_()
    return model.eval()


__all__ = [
    "KINDS",
    "LABEL_FREE_WEIGHTS",
    "MODELS",
    "NEEDS_DENOISER",
    "RewardFit",
    "default_model",
    "ensemble_fitter",
    "evaluator_verdicts",
    "finish_monotone",
    "fit_reward_from_store",
    "label_free_similarity_reward",
    "make_monotone",
    "report_markdown",
    "split_rows",
    "store_inputs",
]
