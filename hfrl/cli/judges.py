"""``hfrl judges train``: a synthetic labeler's and an evaluator's classifiers of your own labelled images.

The recipe of the shipped digit judges (:mod:`hfrl.judge_training`): two classifiers of other architectures,
trained on disjoint halves of the train split with other seeds, measured on the held-out test split. It
writes ``labeler`` and ``evaluator`` (``.safetensors`` + ``.json``) and ``judges.json`` to ``--out``; pass
them as ``--evaluator OUT/evaluator`` (and ``--labeler OUT/labeler``, ``--labeler-checkpoint OUT/labeler``) to
measure good-rates on your images.
"""

from __future__ import annotations

import argparse

from hfrl.cli import OneLineArgumentParser
from hfrl.cli.common import add_device, add_out, add_quiet, add_seed, add_user_data, positive_int

DEFAULT_EPOCHS = 15
"""Epochs of each classifier (the shipped digit judges')."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``hfrl judges`` and its action ``train``."""
    parser = subparsers.add_parser(
        "judges",
        help="train a labeler's and an evaluator's classifiers of your own labelled images",
        description="Judges of your own images: the synthetic labeler and the independent evaluator.",
    )
    actions = parser.add_subparsers(
        dest="judges_command", metavar="ACTION", parser_class=OneLineArgumentParser
    )
    actions.required = True
    p = actions.add_parser(
        "train",
        help="train the two classifiers on disjoint halves of your labelled images",
        description="Train a synthetic labeler's classifier (cnn) and an evaluator's (lenet) on disjoint halves "
        "of the train split of your labelled images, with different seeds, as the shipped digit judges are; "
        "report each one's accuracy on the held-out test split and how often they agree. Writes labeler and "
        "evaluator (.safetensors + .json) and judges.json to --out: pass --evaluator OUT/evaluator (and "
        "--labeler OUT/labeler) to hfrl finetune to measure good-rates on your images (an "
        "output is good when its classifier gives the true class a probability >= 0.2 and its SSIM and "
        "correlation to the clean image reach 0.65 and 0.5).",
    )
    add_user_data(p, max_value=True)
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULT_EPOCHS,
        help="training epochs of each classifier (default: %(default)s)",
    )
    add_seed(p)
    add_device(p)
    add_out(p, "judges")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train, report and save the two judges."""
    from hfrl.data import load_images
    from hfrl.device import resolve_device
    from hfrl.errors import ConfigError
    from hfrl.judge_training import REPORT_NAME, train_judges
    from hfrl.runs import make_run_dir

    if args.data is None:
        raise ConfigError("--data PATH is required: the labelled images the judges learn")
    images = load_images(args.data, max_value=args.max_value)
    if not images.labelled:
        raise ConfigError(
            f"{args.data}: judges need labelled images (a .npz with 'labels', one subfolder per class, or MNIST "
            "IDX files)"
        )
    device = resolve_device(args.device)
    out = make_run_dir(args.out, "judges")
    print(f"training judges of {images!r} on {device}", flush=True)
    report = train_judges(images, out, args.seed, epochs=args.epochs, device=device, progress=not args.quiet)
    print(report.summary())
    print(f"wrote {report.labeler}, {report.evaluator} (.safetensors + .json) and {out / REPORT_NAME}")
    print(
        f"measure good-rates with them: hfrl finetune --data {args.data} --evaluator {report.evaluator} (and "
        f"--labeler {report.labeler} for agents that ask the labeler, e.g. --agent dpo)"
    )
    return 0
