"""``hfrl reward train``: fit a reward model (or an ensemble) to the labels in a feedback store.

It holds out a validation split, trains on the rest, and reports accuracy, ROC AUC and calibration error
on the held-out rows against the labels and — where the store keeps the clean reference images, as it
does for synthetic labels — against the independent evaluator. It writes ``model.safetensors`` +
``model.json`` (so the run directory itself can be passed as a reward to the environments),
``report.json``, ``report.md``, ``config.json`` and ``metrics.csv``.

The default model (``--model similarity``) first trains a self-supervised denoiser on noisy inputs only
— the store's and, with ``--denoiser-images``, noisy target-domain images drawn as the environment draws
them — and then fits a logistic regression on how alike each output and the denoised input are.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hfrl.cli import OneLineArgumentParser
from hfrl.cli.common import (
    add_data,
    add_device,
    add_out,
    add_seed,
    existing_path,
    non_negative_float,
    positive_int,
)

KINDS = ("binary", "pairwise", "triplet")
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "similarity": ("similarity", ()),
    "output": ("cnn", ("output",)),
    "pair": ("cnn", ("noisy", "output")),
    "residual": ("cnn", ("noisy", "output", "residual")),
    "denoised": ("cnn", ("output", "denoised", "denoised_residual")),
}
"""``--model`` choices: ``(architecture, input channels)``; ``triplet`` turns ``cnn`` into ``embedding``."""
NEEDS_DENOISER = ("similarity", "denoised")


def _fraction(text: str) -> float:
    value = non_negative_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction strictly between 0 and 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``hfrl reward`` and its actions."""
    from hfrl.rewards import DenoiserConfig, RewardTrainingConfig
    from hfrl.rewards.ensemble import COMBINES
    from hfrl.rewards.training import RESAMPLING

    parser = subparsers.add_parser(
        "reward",
        help="train reward models on the labels in a feedback store",
        description="Reward models learned from human feedback.",
    )
    actions = parser.add_subparsers(
        dest="reward_command", metavar="ACTION", parser_class=OneLineArgumentParser
    )
    actions.required = True
    p = actions.add_parser(
        "train",
        help="fit a reward model (or ensemble) to a feedback store's labels",
        description="Fit a reward model to the labels in a feedback store: good/bad labels (binary), pairwise "
        "preferences (pairwise, Bradley-Terry) or HERO best-of-batch marks (triplet). Holds out a validation "
        "split and reports accuracy, AUC and calibration error against the labels and, where clean reference "
        "images are stored, against the independent evaluator. Writes model.safetensors + model.json, "
        "report.json and report.md to --out.",
    )
    p.add_argument("--db", required=True, type=existing_path, help="feedback database (or a run directory)")
    p.add_argument(
        "--kind", default="binary", choices=KINDS, help="feedback to learn from (default: %(default)s)"
    )
    p.add_argument(
        "--model",
        default=None,
        choices=tuple(MODELS),
        help="similarity: logistic regression on similarity to a self-supervised denoiser's estimate of the "
        "clean input (default; 'denoised' for --kind triplet); output / pair / residual / denoised: a CNN "
        "over the output alone, the (noisy, output) pair, the pair plus their blurred residual, or the output "
        "beside the denoised input",
    )
    p.add_argument(
        "--ensemble", type=positive_int, default=1, metavar="K", help="members of an ensemble (default: 1)"
    )
    p.add_argument(
        "--combine", default="mean", choices=COMBINES, help="how members combine (default: %(default)s)"
    )
    p.add_argument(
        "--resampling",
        default="bootstrap",
        choices=RESAMPLING,
        help="each member's labels: a bootstrap sample or a disjoint part (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.2,
        help="share of labelled rows held out for validation (default: %(default)s)",
    )
    p.add_argument(
        "--min-votes", type=positive_int, default=1, help="leave out rows with fewer votes (default: 1)"
    )
    p.add_argument(
        "--evaluator",
        type=existing_path,
        default=None,
        help="evaluator classifier checkpoint (default: the shipped one)",
    )
    g = p.add_argument_group("training")
    defaults = RewardTrainingConfig()
    g.add_argument(
        "--steps", type=positive_int, default=defaults.steps, help="optimiser steps (default: %(default)s)"
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help="batch size (default: %(default)s)",
    )
    g.add_argument(
        "--lr", type=non_negative_float, default=defaults.lr, help="learning rate (default: %(default)s)"
    )
    g.add_argument(
        "--aux-weight",
        type=non_negative_float,
        default=defaults.aux_weight,
        help="weight of the Lee-style auxiliary loss, 0 = off (default: %(default)s)",
    )
    g.add_argument(
        "--pretrain-steps",
        type=_non_negative_int,
        default=defaults.pretrain_steps,
        help="label-free steps of the auxiliary task before training (default: %(default)s)",
    )
    g.add_argument("--no-augment", action="store_true", help="turn augmentation off")
    g.add_argument("--no-class-weighting", action="store_true", help="turn class weighting off")
    g.add_argument(
        "--label-smoothing",
        type=non_negative_float,
        default=defaults.label_smoothing,
        help="label smoothing in [0, 0.5) (default: %(default)s)",
    )
    d = p.add_argument_group("self-supervised denoiser (--model similarity or denoised)")
    d.add_argument(
        "--denoiser-steps",
        type=positive_int,
        default=DenoiserConfig.steps,
        help="Noise2Self training steps (default: %(default)s)",
    )
    d.add_argument(
        "--denoiser-images",
        type=_non_negative_int,
        default=2000,
        help="noisy target-domain train images (no labels, no clean images reach the model) added to the "
        "store's noisy inputs to train the denoiser; 0 = the store's alone (default: %(default)s)",
    )
    add_data(p)
    add_seed(p)
    add_device(p)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is much faster when other jobs share the cores)",
    )
    add_out(p, "reward")
    p.set_defaults(func=run_train)


def _split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` row indices: a seeded random split with at least one row on each side."""
    from hfrl.errors import DataError

    if n < 2:
        raise DataError(f"need at least 2 labelled rows to hold out a validation split, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    return perm[n_val:], perm[:n_val]


def _evaluator_verdicts(store: Any, ids: list[int], evaluator_path: Path | None, device: torch.device) -> Any:
    """The evaluator's judgement of the stored outputs ``ids``, or ``None`` without clean images."""
    from hfrl.feedback import FeedbackError
    from hfrl.judges import Evaluator

    try:
        clean = store.clean_images(ids)
    except FeedbackError:
        return None
    evaluator = Evaluator.from_pretrained(evaluator_path, device=device)
    return evaluator.judge(store.images(ids, "output"), clean, store.sample_classes(ids))


def _store_inputs(store: Any) -> torch.Tensor:
    """Every noisy input the store holds, labelled or not: ``(N, 1, H, W)``."""
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


def _denoiser_images(args: argparse.Namespace, store_inputs: torch.Tensor) -> torch.Tensor:
    """Noisy images to train the self-supervised denoiser on: the store's, plus target-domain ones."""
    if args.denoiser_images == 0:
        return store_inputs
    from hfrl.data import Domains, load_dataset, parse_classes
    from hfrl.noise import make_noise

    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    domains = Domains(data, parse_classes(args.source_classes), parse_classes(args.target_classes))
    images = domains.target("train")
    g = torch.Generator().manual_seed(args.seed + 1)
    idx = torch.randperm(len(images), generator=g)[: args.denoiser_images]
    noisy = make_noise(args.noise, args.noise_level)(images.images[idx], g)
    if noisy.shape[1:] != store_inputs.shape[1:]:
        from hfrl.errors import DataError

        raise DataError(
            f"{args.dataset} images are {tuple(noisy.shape[2:])} but the store's are "
            f"{tuple(store_inputs.shape[2:])}; pass --denoiser-images 0 or the matching --dataset"
        )
    return torch.cat([store_inputs, noisy])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _markdown(report: dict[str, Any]) -> str:
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
    lines += ["", f"Checkpoint: `{report['checkpoint']}`", ""]
    return "\n".join(lines)


def _check_args(args: argparse.Namespace) -> None:
    from hfrl.errors import ConfigError

    if args.label_smoothing >= 0.5:
        raise ConfigError(f"--label-smoothing must be below 0.5, got {args.label_smoothing}")
    if args.lr <= 0:
        raise ConfigError(f"--lr must be > 0, got {args.lr}")
    if args.model is None:
        args.model = "denoised" if args.kind == "triplet" else "similarity"
    uses_aux = args.aux_weight > 0 or args.pretrain_steps > 0
    if args.kind == "triplet" and args.model == "similarity":
        raise ConfigError(
            "--kind triplet trains an embedding network; use --model output, pair, residual or denoised"
        )
    if args.kind == "triplet" and uses_aux:
        raise ConfigError("--aux-weight and --pretrain-steps need a logit head; --kind triplet has none")
    if args.model == "output" and uses_aux:
        raise ConfigError(
            "--aux-weight and --pretrain-steps ask which noisy input an output belongs to; "
            "--model output does not see the input (use pair, residual, denoised or similarity)"
        )


def run_train(args: argparse.Namespace) -> int:
    """Load the labels, split, train, validate and write the run directory."""
    from hfrl.device import resolve_device, seed_everything
    from hfrl.errors import DataError
    from hfrl.feedback import FeedbackStore
    from hfrl.rewards import (
        DenoiserConfig,
        LabelledSamples,
        PreferencePairs,
        RewardModelConfig,
        RewardTrainingConfig,
        TripletFeedback,
        binary_report,
        make_reward_model,
        pairwise_report,
        save_reward_model,
        train_denoiser,
        train_ensemble,
        train_reward_model,
    )
    from hfrl.runs import CSVLogger, make_run_dir, write_json

    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    start = time.perf_counter()

    with FeedbackStore(args.db, create=False) as store:
        if args.kind == "pairwise":
            pt = store.pair_tensors(min_votes=args.min_votes)
            if len(pt) == 0:
                raise DataError(
                    f"{args.db}: no pairwise labels to train on (label some 'pair' queries first)"
                )
            data: Any = PreferencePairs(pt.inputs, pt.left, pt.right, pt.preference)
            ids_left, ids_right = pt.left_ids.tolist(), pt.right_ids.tolist()
        else:
            rt = store.rating_tensors(min_votes=args.min_votes)
            if len(rt) == 0:
                raise DataError(f"{args.db}: no good/bad labels to train on (label some queries first)")
            if args.kind == "triplet":
                data = TripletFeedback(rt.inputs, rt.outputs, rt.targets, rt.best > 0)
            else:
                data = LabelledSamples(rt.inputs, rt.outputs, rt.targets)
            ids_left, ids_right = rt.sample_ids.tolist(), []
        train_idx, val_idx = _split(len(data), args.val_fraction, args.seed)
        train, val = data.subset(train_idx), data.subset(val_idx)
        val_left = [ids_left[i] for i in val_idx.tolist()]
        val_right = [ids_right[i] for i in val_idx.tolist()] if ids_right else []
        verdict_left = _evaluator_verdicts(store, val_left, args.evaluator, device)
        verdict_right = _evaluator_verdicts(store, val_right, args.evaluator, device) if val_right else None
        store_inputs = _store_inputs(store) if args.model in NEEDS_DENOISER else None

    denoiser = denoiser_info = None
    if store_inputs is not None:
        images = _denoiser_images(args, store_inputs)
        den_config = DenoiserConfig(steps=args.denoiser_steps, seed=args.seed, device=str(device))
        denoiser, info = train_denoiser(images, den_config)
        denoiser_info = {"images": int(images.shape[0]), "steps": args.denoiser_steps, **info}
    arch, inputs = MODELS[args.model]
    if args.kind == "triplet":
        arch = "embedding"
    model_config = RewardModelConfig(arch=arch, inputs=inputs)
    config = RewardTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        aux_weight=args.aux_weight,
        pretrain_steps=args.pretrain_steps,
        augment=not args.no_augment,
        class_weighting=not args.no_class_weighting,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        device=str(device),
    )
    if args.ensemble > 1:
        model, results = train_ensemble(
            train,
            args.ensemble,
            config=config,
            resampling=args.resampling,
            combine=args.combine,
            make_member=lambda seed: make_reward_model(model_config, seed, denoiser=denoiser),
        )
    else:
        result = train_reward_model(
            make_reward_model(model_config, args.seed, denoiser=denoiser), train, config
        )
        model, results = result.model, [result]

    validation: dict[str, Any] = {}
    if args.kind == "pairwise":
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

    out = make_run_dir(args.out, "reward")
    meta = {
        "kind": args.kind,
        "model": args.model,
        "db": str(args.db),
        "seed": args.seed,
        "validation": validation,
    }
    checkpoint = save_reward_model(out / "model", model, metadata=meta)
    logger = CSVLogger(out / "metrics.csv")
    for member, r in enumerate(results):
        for row in r.history:
            logger.log(
                {"member": member, **{k: row.get(k, "") for k in ("step", "loss", "loss/main", "loss/aux")}}
            )
    report = {
        "kind": args.kind,
        "model_name": args.model,
        "db": str(args.db),
        "ensemble": args.ensemble,
        "combine": args.combine if args.ensemble > 1 else None,
        "seed": args.seed,
        "rows": {"train": len(train), "val": len(val)},
        "model": model_config.to_dict(),
        "denoiser": denoiser_info,
        "training": asdict(config),
        "validation": validation,
        "seconds": time.perf_counter() - start,
        "checkpoint": str(checkpoint),
    }
    write_json(out / "report.json", report)
    write_json(out / "config.json", {"args": {k: v for k, v in vars(args).items() if k != "func"}, **report})
    (out / "report.md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {checkpoint}, {out / 'report.json'} and {out / 'report.md'}")
    return 0
