"""``hfrl censor``: censored sampling of a DDPM with a reward model learned from a few labels.

Two ways in:

* ``hfrl censor --reward PATH [PATH ...]``: sample with guidance from trained reward models (several
  paths are combined as a product of probabilities, Yoon et al. 2023);
* ``hfrl censor --label``: first sample a pool, collect malign/benign labels through the feedback store —
  from people on the labelling page (``--labeler people``, served by this command) or from the synthetic
  labeler (``--labeler synthetic``) — until ``--malign`` malign samples are found (the paper's budget: 10),
  train the reward models (``--setup ensemble``: 5 models on 10 malign + 10 benign each), then sample.

Either way it writes a run directory: ``config.json``, ``censor.json`` (malign rate by the independent
evaluator, the labeler's rate for reference, fidelity as a 7, timings, labels used), ``grid.png`` (malign
samples framed in red) and, with ``--label``, the reward checkpoint ``reward.*`` and ``feedback.sqlite``.
Label words: ``good`` = benign, ``bad`` = malign (crossed).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfrl.cli.common import (
    add_device,
    add_out,
    add_quiet,
    add_seed,
    existing_path,
    non_negative_float,
    positive_int,
)
from hfrl.errors import ConfigError

if TYPE_CHECKING:
    import torch

SETUP_CHOICES = ("single", "union", "ensemble")
DEFAULT_POOL = 400
DEFAULT_CLASSIFIER_WEIGHT = {"ensemble": 1.0, "single": 5.0, "union": 5.0}
"""The paper's MNIST weights: 1.0 for the product of five models, 5.0 for one model."""
DEFAULT_FORWARD_WEIGHT = 2.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl censor``."""
    p = sub.add_parser(
        "censor",
        help="censored sampling of a DDPM with a reward learned from a few labels",
        description="Sample from a DDPM with reward guidance that steers away from malign (crossed-7) images, and "
        "report the malign rate by the independent evaluator. Give trained reward models with --reward, or "
        "collect labels and train them first with --label.",
    )
    p.add_argument(
        "--ddpm", type=existing_path, default=None, help="DDPM checkpoint (default: the shipped ddpm_sevens)"
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--reward",
        type=existing_path,
        nargs="+",
        default=None,
        help="censor_reward checkpoint(s); several are multiplied",
    )
    src.add_argument("--label", action="store_true", help="collect labels and train the reward models first")
    p.add_argument("--n", type=positive_int, default=1000, help="samples to draw (default: %(default)s)")
    p.add_argument(
        "--baseline", action="store_true", help="also sample without guidance from the same noise and compare"
    )

    sampling = p.add_argument_group("sampling")
    sampling.add_argument(
        "--steps", type=positive_int, default=25, help="sampler steps (default: %(default)s)"
    )
    sampling.add_argument(
        "--scheduler", choices=("ddim", "ddpm"), default="ddim", help="(default: %(default)s)"
    )
    sampling.add_argument(
        "--eta", type=non_negative_float, default=0.0, help="DDIM stochasticity (default: 0)"
    )
    sampling.add_argument(
        "--batch-size", type=positive_int, default=250, help="samples at once (default: %(default)s)"
    )

    guide = p.add_argument_group("guidance (each term 0 = off)")
    guide.add_argument(
        "--classifier-weight", type=non_negative_float, default=None,
        help="classifier guidance on x_t (time-dependent rewards; default 1 for an ensemble, 5 for one model)",
    )  # fmt: skip
    guide.add_argument(
        "--forward-weight", type=non_negative_float, default=None,
        help=f"forward (universal) guidance on the predicted x0 (default {DEFAULT_FORWARD_WEIGHT:g} for time-independent rewards, else 0)",
    )  # fmt: skip
    guide.add_argument(
        "--backward-steps", type=int, default=0, help="backward-guidance Adam steps per step (default 0)"
    )
    guide.add_argument(
        "--backward-lr",
        type=non_negative_float,
        default=0.05,
        help="backward-guidance step size (default: %(default)s)",
    )
    guide.add_argument("--recurrences", type=positive_int, default=1, help="recurrence R (default 1: none)")

    lab = p.add_argument_group("labels (with --label)")
    lab.add_argument(
        "--labeler",
        choices=("synthetic", "people"),
        default="synthetic",
        help="who labels (default: %(default)s)",
    )
    lab.add_argument("--db", default=None, help="feedback database (default: RUN/feedback.sqlite)")
    lab.add_argument(
        "--malign",
        type=positive_int,
        default=10,
        help="label until this many malign are found (default: %(default)s)",
    )
    lab.add_argument(
        "--max-labels",
        type=positive_int,
        default=300,
        help="stop after this many labels (default: %(default)s)",
    )
    lab.add_argument("--page", type=positive_int, default=5, help="samples per query (default: %(default)s)")
    lab.add_argument(
        "--pool",
        type=positive_int,
        default=DEFAULT_POOL,
        help="samples generated for labelling (default: %(default)s)",
    )
    lab.add_argument(
        "--setup",
        choices=SETUP_CHOICES,
        default="ensemble",
        help="reward models to train (default: %(default)s)",
    )
    lab.add_argument(
        "--reward-iterations",
        type=positive_int,
        default=400,
        help="training steps per reward model (default: %(default)s)",
    )
    lab.add_argument(
        "--time-independent",
        action="store_true",
        help="train time-independent rewards (forward guidance) instead",
    )
    lab.add_argument(
        "--host",
        default="127.0.0.1",
        help="labelling page address for --labeler people (default: %(default)s)",
    )
    lab.add_argument("--port", type=int, default=8765, help="labelling page port (default: %(default)s)")
    lab.add_argument(
        "--label-timeout", type=non_negative_float, default=None, help="seconds to wait for people per page"
    )
    add_seed(p)
    add_device(p)
    add_out(p, "censor")
    add_quiet(p)
    p.set_defaults(func=run)


def _progress(quiet: bool, what: str) -> Any:
    if quiet:
        return None

    def report(done: int, total: int) -> None:
        print(f"  {what}: {done}/{total}", flush=True)

    return report


def _guidance(args: argparse.Namespace, reward: Any, setup: str) -> Any:
    from hfrl.censoring import GuidanceConfig

    time_dependent = bool(reward.time_dependent)
    classifier = args.classifier_weight
    if classifier is None:
        classifier = DEFAULT_CLASSIFIER_WEIGHT[setup] if time_dependent else 0.0
    if classifier > 0 and not time_dependent:
        raise ConfigError("--classifier-weight needs time-dependent reward models; use --forward-weight")
    forward = (
        args.forward_weight
        if args.forward_weight is not None
        else (0.0 if time_dependent else DEFAULT_FORWARD_WEIGHT)
    )
    if args.backward_steps < 0:
        raise ConfigError(f"--backward-steps must be >= 0, got {args.backward_steps}")
    return GuidanceConfig(
        classifier_weight=classifier, forward_weight=forward, backward_steps=args.backward_steps,
        backward_lr=args.backward_lr, recurrences=args.recurrences,
    )  # fmt: skip


def _collect(
    args: argparse.Namespace,
    model: Any,
    scheduler: Any,
    out: Path,
    gen: torch.Generator,
    device: torch.device,
) -> Any:
    """Sample the pool and collect labels through the feedback store."""
    from hfrl.censoring import LabelBudget, MalignLabeler, censored_sample, collect_labels
    from hfrl.feedback import FeedbackQueue

    print(f"sampling a pool of {args.pool} for labelling ...", flush=True)
    pool = censored_sample(model, scheduler, args.pool, generator=gen, batch_size=args.batch_size)
    db = Path(args.db) if args.db else out / "feedback.sqlite"
    budget = LabelBudget(malign=args.malign, max_labels=args.max_labels, page=args.page)
    labeler = (
        MalignLabeler.from_pretrained(device=device, seed=args.seed) if args.labeler == "synthetic" else None
    )
    server = thread = None
    if labeler is None:
        from hfrl.feedback.server import prepare_server

        server = prepare_server(db, args.host, args.port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        print("label each 7: good = a plain 7 (benign), bad = a crossed 7 (malign)", flush=True)

    def progress(n_malign: int, used: int) -> None:
        if not args.quiet:
            print(f"  labels: {used}, malign found: {n_malign}/{budget.malign}", flush=True)

    try:
        with FeedbackQueue(db) as queue:
            labels = collect_labels(
                pool,
                queue,
                budget,
                labeler=labeler,
                timeout=args.label_timeout,
                checkpoint=str(args.ddpm or "ddpm_sevens"),
                progress=progress,
            )
    finally:
        if server is not None and thread is not None:
            server.stop()
            thread.join(timeout=10)
    print(
        f"labels: {labels.labels_used} ({labels.n_malign} malign, {labels.n_benign} benign) in {db}",
        flush=True,
    )
    return labels


def run(args: argparse.Namespace) -> int:
    """Collect labels and train (with ``--label``) or load the rewards, sample with guidance, report."""
    import torch

    from hfrl.censoring import (
        MalignEvaluator,
        MalignLabeler,
        ProductEnsemble,
        RewardTrainConfig,
        censored_sample,
        load_censor_reward,
        measure,
        save_censor_reward,
        train_reward_setup,
    )
    from hfrl.device import resolve_device, seed_everything
    from hfrl.diffusion import load_ddpm, make_scheduler
    from hfrl.runs import make_run_dir, write_json

    if not args.label and not args.reward:
        raise ConfigError(
            "give trained reward models with --reward PATH, or collect labels first with --label"
        )
    if args.scheduler == "ddim" and args.eta > 1:
        raise ConfigError(f"--eta must be in [0, 1], got {args.eta}")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    model = load_ddpm(args.ddpm, device=device)
    scheduler = make_scheduler(args.scheduler, model.schedule, args.steps, eta=args.eta)
    out = make_run_dir(args.out, "censor")
    gen = torch.Generator().manual_seed(args.seed)
    record: dict[str, Any] = {"ddpm": str(args.ddpm or "ddpm_sevens"), "n": args.n, "seed": args.seed}

    if args.label:
        labels = _collect(args, model, scheduler, out, gen, device)
        print(f"training the {args.setup} reward ...", flush=True)
        train = RewardTrainConfig(iterations=args.reward_iterations, seed=args.seed)
        reward = train_reward_setup(
            labels,
            args.setup,
            time_dependent=not args.time_independent,
            train=train,
            schedule=model.schedule,
            device=device,
        )
        meta = {"setup": args.setup, "labels_used": labels.labels_used, "malign": labels.n_malign}
        save_censor_reward(
            out / "reward", reward, {**meta, "benign": labels.n_benign, "train": asdict(train)}
        )
        setup = args.setup
        record.update(
            labels_used=labels.labels_used, labels_malign=labels.n_malign, labels_benign=labels.n_benign
        )
    else:
        loaded = [load_censor_reward(path, device) for path in args.reward]
        if len(loaded) == 1:
            reward = loaded[0]
        else:
            members = [m for r in loaded for m in (r.members if isinstance(r, ProductEnsemble) else [r])]
            reward = ProductEnsemble(members)  # type: ignore[arg-type]
        setup = "ensemble" if isinstance(reward, ProductEnsemble) else "single"
        record["reward"] = [str(p) for p in args.reward]
    guidance = _guidance(args, reward, setup)
    write_json(
        out / "config.json", {**vars(args), "guidance": asdict(guidance), "setup": setup, "func": None}
    )

    evaluator = MalignEvaluator.from_pretrained(device=device)
    judge = MalignLabeler.from_pretrained(device=device)
    results: dict[str, Any] = {}

    def draw(what: str, reward_model: Any = None) -> tuple[torch.Tensor, float]:
        # The same seed for the baseline and the censored run: both start from the same x_T.
        gen = torch.Generator().manual_seed(args.seed + 1)
        start = time.perf_counter()
        images = censored_sample(
            model, scheduler, args.n, reward_model, guidance, generator=gen, batch_size=args.batch_size,
            progress=_progress(args.quiet, what),
        )  # fmt: skip
        return images, time.perf_counter() - start

    if args.baseline:
        images, seconds = draw("baseline")
        results["baseline"] = asdict(measure(images, evaluator, judge, seconds=seconds))
    print(f"sampling {args.n} with guidance ({guidance.describe()}) ...", flush=True)
    images, seconds = draw("censored", reward)
    report = measure(images, evaluator, judge, seconds=seconds)
    results["censored"] = asdict(report)
    write_json(out / "censor.json", {**record, "setup": setup, "guidance": asdict(guidance), **results})
    grid = save_censor_grid(images[:100], evaluator.is_malign(images[:100]), out / "grid.png")
    if "baseline" in results:
        b = results["baseline"]
        print(
            f"baseline: malign {b['malign_rate']:.1%} (evaluator), fidelity {b['fidelity']:.1%}, {b['seconds']:.1f} s"
        )
    print(
        f"censored: malign {report.malign_rate:.1%} (evaluator; labeler {report.labeler_malign_rate:.1%}), "
        f"fidelity {report.fidelity:.1%}, {report.seconds:.1f} s for {report.n}"
    )
    print(f"wrote {out / 'censor.json'} and {grid}")
    return 0


def save_censor_grid(
    images: torch.Tensor, malign: torch.Tensor, path: Path, nrow: int = 10, scale: int = 2
) -> Path:
    """Save samples ``(B, 1, H, W)`` as a PNG grid, the ones judged malign framed in red.

    Args:
        images: Samples in ``[0, 1]``.
        malign: ``(B,)`` bool.
        path: Output PNG.
        nrow: Samples per row.
        scale: Integer upscaling.
    """
    import torch
    from torchvision.utils import make_grid, save_image

    rgb = images.repeat(1, 3, 1, 1)  # (B, 3, H, W)
    rgb = torch.nn.functional.pad(rgb, (1, 1, 1, 1), value=0.0)
    rgb[malign, 0, 0, :] = rgb[malign, 0, -1, :] = 1.0
    rgb[malign, 0, :, 0] = rgb[malign, 0, :, -1] = 1.0
    grid = make_grid(rgb, nrow=nrow, padding=1, pad_value=0.3)
    grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return path
