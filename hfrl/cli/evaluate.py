"""``hfrl evaluate``: per-class metrics of a generator on the source and target domains."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hfrl.cli.common import add_data, add_device, add_out, add_seed, resolve_checkpoint, resolve_task_args

DEFAULT_GENERATOR = "denoiser_source"
COLUMNS = ["domain", "class", "n", "psnr_noisy", "psnr", "ssim", "good_rate"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="per-class PSNR, SSIM and evaluator good-rate of a generator",
        description="Evaluate a generator on the test split of the source and target domains: print a per-class "
        "table, write it as JSON and save a PNG grid of noisy | output | clean per class.",
    )
    p.add_argument(
        "--generator",
        default=None,
        help="generator checkpoint (NAME, NAME.safetensors or a run directory; default: the task's source generator)",
    )
    p.add_argument(
        "--evaluator",
        default=None,
        help="evaluator classifier checkpoint (default: the task's)",
    )
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="data split (default: %(default)s)"
    )
    add_data(p)
    add_seed(p)
    add_device(p)
    add_out(p, "evaluate")
    p.set_defaults(func=run)


def resolve_generator_path(path: str | Path | None) -> Path:
    """The checkpoint path for ``--generator``: the shipped one when omitted.

    Otherwise :func:`~hfrl.cli.common.resolve_checkpoint`, the resolver every command uses.
    """
    if path is None:
        from hfrl.judges import asset_path

        return asset_path(DEFAULT_GENERATOR)
    return resolve_checkpoint(path, "generator")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table and write JSON and PNG."""
    from hfrl.checkpoint import load_checkpoint
    from hfrl.data import Domains, check_image_shape, load_dataset, parse_classes
    from hfrl.device import resolve_device
    from hfrl.evaluation import evaluate_generator, format_table, save_grid
    from hfrl.judges import Evaluator, missing_judge_note, require_judge
    from hfrl.names import UNJUDGED_DATASETS
    from hfrl.noise import make_noise
    from hfrl.runs import make_run_dir, write_json
    from hfrl.tasks import get_task

    resolve_task_args(args)
    task = get_task(args.task)
    generator_path = (
        resolve_checkpoint(args.generator, "generator") if args.generator else task.generator_path()
    )
    if args.evaluator is not None:
        args.evaluator = resolve_checkpoint(args.evaluator, "evaluator")
    elif task.evaluator is not None:
        args.evaluator = Path(task.evaluator)
    judged = args.evaluator is not None or args.dataset not in UNJUDGED_DATASETS
    if judged:
        require_judge(args.dataset, args.evaluator)
    device = resolve_device(args.device)
    generator, doc = load_checkpoint(generator_path, kind="generator", device=device)
    data = load_dataset(args.dataset, args.data_dir, download=args.download)
    check_image_shape(generator.config.image_shape, data, f"the generator {generator_path}")
    domains = Domains(data, parse_classes(args.source_classes), parse_classes(args.target_classes))
    if judged:
        evaluator = Evaluator.from_pretrained(args.evaluator, device=device)
    else:  # no judge reads these images (patches-colour's RGB patches): PSNR/SSIM only
        evaluator = Evaluator(None)
        print(missing_judge_note(data.image_shape), file=sys.stderr)
    noise = make_noise(args.noise, args.noise_level)
    result = evaluate_generator(generator, domains, noise, evaluator, split=args.split, seed=args.seed)
    out = make_run_dir(args.out, "evaluate")
    print(format_table(result.rows(), COLUMNS))
    s, t = result.source.summary(), result.target.summary()
    if judged:
        print(
            f"\nsource good-rate {s['good_rate']:.1%} -> target good-rate {t['good_rate']:.1%} "
            f"(PSNR {s['psnr']:.2f} -> {t['psnr']:.2f} dB)"
        )
    else:
        print(
            f"\nsource PSNR {s['psnr']:.2f} dB (SSIM {s['ssim']:.3f}) -> target PSNR {t['psnr']:.2f} dB "
            f"(SSIM {t['ssim']:.3f}); noisy inputs {s['psnr_noisy']:.2f} / {t['psnr_noisy']:.2f} dB"
        )
    write_json(
        out / "evaluation.json", {"generator": str(args.generator or DEFAULT_GENERATOR), **result.to_dict()}
    )
    grid = save_grid(result, out / "grid.png")
    print(f"wrote {out / 'evaluation.json'} and {grid}")
    return 0
