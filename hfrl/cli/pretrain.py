"""``hfrl pretrain``: supervised denoising on the source domain."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hfrl.cli.common import (
    add_data,
    add_device,
    add_out,
    add_quiet,
    add_seed,
    add_user_data,
    positive_float,
    positive_int,
    resolve_task_args,
)
from hfrl.errors import ConfigError, HfrlError
from hfrl.names import FAMILIES
from hfrl.pretrain_config import PretrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl pretrain``."""
    p = sub.add_parser(
        "pretrain",
        help="train a denoiser on the source domain with supervision",
        description="Train a denoiser on noisy/clean pairs of the source domain; write a safetensors checkpoint, "
        "a JSON config and per-epoch validation PSNR to a run directory.",
    )
    add_data(p)
    add_user_data(p, max_value=True, source=True)
    g = p.add_argument_group("model and training")
    g.add_argument(
        "--family", default="conv", choices=FAMILIES, help="generator family (default: %(default)s)"
    )
    g.add_argument(
        "--width", type=positive_int, default=PretrainConfig.width, help="channels (default: %(default)s)"
    )
    g.add_argument(
        "--bottleneck",
        type=positive_int,
        default=PretrainConfig.bottleneck,
        help="dense code size (default: %(default)s)",
    )
    g.add_argument(
        "--epochs", type=positive_int, default=PretrainConfig.epochs, help="max epochs (default: %(default)s)"
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=PretrainConfig.batch_size,
        help="batch size (default: %(default)s)",
    )
    g.add_argument(
        "--lr",
        type=positive_float,
        default=PretrainConfig.lr,
        help="Adam learning rate (default: %(default)s)",
    )
    g.add_argument(
        "--patience",
        type=positive_int,
        default=PretrainConfig.patience,
        help="early-stopping patience in epochs (default: %(default)s)",
    )
    add_seed(p)
    add_device(p)
    add_out(p, "pretrain")
    add_quiet(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and report where the checkpoint went."""
    from hfrl.data import load_dataset
    from hfrl.device import seed_everything
    from hfrl.pretrain import pretrain
    from hfrl.runs import make_run_dir

    seed_everything(args.seed)
    user = args.data is not None or args.source_data is not None
    if user and args.dataset is not None:
        raise ConfigError("give either --dataset or your own images (--data/--source-data), not both")
    if args.data is not None and args.source_data is not None:
        raise ConfigError("give either --data or --source-data, not both")
    resolve_task_args(args)
    config = PretrainConfig(
        task=args.task,
        dataset=Path(args.data) if args.data is not None else args.dataset,
        source_data=Path(args.source_data) if args.source_data is not None else None,
        max_value=args.max_value,
        data_dir=args.data_dir,
        source_classes=args.source_classes,
        noise=args.noise,
        noise_level=args.noise_level,
        family=args.family,
        width=args.width,
        bottleneck=args.bottleneck,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
    )
    # the user's images were read by the config; a named dataset is read here (with --download)
    data = None if user else load_dataset(args.dataset, args.data_dir, download=args.download)
    existed = args.out is not None and Path(args.out).exists()
    out = make_run_dir(args.out, "pretrain")
    try:
        result = pretrain(config, data=data, out_dir=out, progress=not args.quiet)
    except HfrlError:
        if not existed:  # a run that failed leaves no directory behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"best validation PSNR {result.best_val_psnr:.2f} dB after {len(result.history)} epochs")
    print(f"checkpoint: {result.checkpoint}")
    return 0
