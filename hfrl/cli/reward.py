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
import time
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import torch

SIMILARITY_LR = 0.05
"""Default learning rate of the similarity model's head: at 0.03-0.1 its four weights converge to the same
values from every seed; at the CNNs' 3e-3 they barely leave their random start in a few hundred steps."""


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
    from hfrl.rewards.config import (  # the light module: --help imports no torch
        COMBINES,
        KINDS,
        MODELS,
        RESAMPLING,
        DenoiserConfig,
        RewardTrainingConfig,
    )

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
        "--lr",
        type=non_negative_float,
        default=None,
        help=f"learning rate (default: {SIMILARITY_LR} for the similarity model, whose four-weight head barely "
        f"moves at the CNNs' {defaults.lr}; {defaults.lr} otherwise)",
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
        "--monotone",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="similarity model: keep the weights on SSIM, correlation and RMSE to the denoised input at their "
        "natural signs, so a generator fine-tuned by the reward's gradient cannot trade one away "
        "(default: on; --no-monotone for a free logistic regression)",
    )
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


def _denoiser_images(args: argparse.Namespace, shape: tuple[int, ...]) -> torch.Tensor | None:
    """``--denoiser-images`` noisy target-domain train images for the self-supervised denoiser, or ``None``.

    Args:
        args: The parsed flags.
        shape: ``(C, H, W)`` of the store's images, which these must match.
    """
    if args.denoiser_images == 0:
        return None
    import torch

    from hfrl.cli.common import resolve_task_args
    from hfrl.data import Domains, load_dataset, parse_classes
    from hfrl.errors import DataError
    from hfrl.noise import make_noise

    resolve_task_args(args)
    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    domains = Domains(data, parse_classes(args.source_classes), parse_classes(args.target_classes))
    images = domains.target("train")
    g = torch.Generator().manual_seed(args.seed + 1)
    idx = torch.randperm(len(images), generator=g)[: args.denoiser_images]
    noisy = make_noise(args.noise, args.noise_level)(images.images[idx], g)
    if tuple(noisy.shape[1:]) != tuple(shape):
        raise DataError(
            f"{args.dataset} images are {'x'.join(map(str, noisy.shape[1:]))} but the store's are "
            f"{'x'.join(map(str, shape))}; pass --denoiser-images 0 or the matching --dataset"
        )
    return noisy


def _store_image_shape(db: Path) -> tuple[int, ...] | None:
    """``(C, H, W)`` of the store's first sample, or ``None`` for an empty store."""
    from hfrl.feedback import FeedbackStore

    with FeedbackStore(db, readonly=True) as store:
        queries = store.queries()
        items = store.items(queries[0].id) if queries else []
        if not items:
            return None
        return tuple(store.images([items[0].sample_id], "input").shape[1:])


def _check_args(args: argparse.Namespace) -> None:
    from hfrl.errors import ConfigError

    if args.label_smoothing >= 0.5:
        raise ConfigError(f"--label-smoothing must be below 0.5, got {args.label_smoothing}")
    if args.lr is not None and args.lr <= 0:
        raise ConfigError(f"--lr must be > 0, got {args.lr}")
    if args.model is None:
        from hfrl.rewards.fit import default_model

        args.model = default_model(args.kind)
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
    import torch

    from hfrl.device import resolve_device, seed_everything
    from hfrl.rewards import DenoiserConfig, RewardTrainingConfig
    from hfrl.rewards.fit import NEEDS_DENOISER, fit_reward_from_store, report_markdown
    from hfrl.runs import write_json

    _check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    device = resolve_device(args.device)
    start = time.perf_counter()
    extra = None
    if args.model in NEEDS_DENOISER:
        shape = _store_image_shape(args.db)
        extra = _denoiser_images(args, shape) if shape is not None else None
    lr = args.lr if args.lr is not None else SIMILARITY_LR if args.model == "similarity" else None
    config = RewardTrainingConfig(
        lr=lr if lr is not None else RewardTrainingConfig.lr,
        steps=args.steps,
        batch_size=args.batch_size,
        aux_weight=args.aux_weight,
        pretrain_steps=args.pretrain_steps,
        augment=not args.no_augment,
        class_weighting=not args.no_class_weighting,
        label_smoothing=args.label_smoothing,
        seed=args.seed,
        device=str(device),
    )
    fit = fit_reward_from_store(  # creates the run directory once the labels are known to be usable
        args.db,
        args.out,
        kind=args.kind,
        model=args.model,
        ensemble=args.ensemble,
        combine=args.combine,
        resampling=args.resampling,
        val_fraction=args.val_fraction,
        min_votes=args.min_votes,
        training=config,
        denoiser_config=DenoiserConfig(steps=args.denoiser_steps, seed=args.seed, device=str(device)),
        extra_denoiser_images=extra,
        evaluator=args.evaluator,
        seed=args.seed,
        device=device,
        monotone=args.monotone,
    )
    out = Path(fit.checkpoint).parent
    report = {**fit.report, "seconds": time.perf_counter() - start}
    write_json(out / "report.json", report)
    write_json(out / "config.json", {"args": {k: v for k, v in vars(args).items() if k != "func"}, **report})
    (out / "report.md").write_text(report_markdown(report))
    print(report_markdown(report))
    print(f"wrote {fit.checkpoint}, {out / 'report.json'} and {out / 'report.md'}")
    return 0
