"""Fashion-MNIST: the seed paper's task and statistic on the dataset it reports, when the files are on disk.

The seed paper (arXiv 2308.00307) reports its per-image PSNR gain, +1.61 ± 2.78 dB, on Fashion-MNIST. This
benchmark rebuilds hfrl's main task there, with nothing from the digits:

1. Data: ``--per-class`` images of each of the ten classes from the official training part (seeded), written
   as IDX files under ``<out stem>-runs/data`` so every hfrl component reads them as ``fashion-mnist``.
2. Judges: the synthetic labeler's and the evaluator's classifiers, trained on two disjoint halves of other
   training images (``cnn`` and ``lenet``, as for the shipped digit judges; never on a task image), with the
   same thresholds as the digit judges. Their accuracy on the official test part is reported.
3. Source generator: the shipped generator's architecture and recipe, trained on noisy T-shirts (class 0)
   only; the target domain is the nine other classes.
4. Bounds: the source generator (lower) and the same architecture trained with supervision on clean images of
   every class (upper, which no agent may use).
5. Per seed: ``--labels`` answers of the synthetic labeler through the feedback store (active selection), the
   monotone similarity reward fitted to them, and each agent's fine-tuning with its defaults; the independent
   evaluator and the per-image PSNR gain on the test split.

Without the files the benchmark says where it looked and exits 0 (``make bench`` goes on). Looked in:
``--data-dir``, ``$HFRL_FASHION_MNIST``, ``data/fashion-mnist``, ``~/.cache/hfrl/fashion-mnist`` and
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package); either the four IDX files
(plain or ``.gz``) or torchvision's ``FashionMNIST/raw`` layout.

Usage::

    python scripts/bench_fashion.py [--data-dir DIR] [--seeds 2] [--out bench-results/fashion.md] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import cell  # noqa: E402 - a sibling script: the same table cells

from hfrl.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from hfrl.classifiers import train_judge_pair  # noqa: E402
from hfrl.data import Domains, ImageSet, find_idx_files, load_torchvision, write_idx  # noqa: E402
from hfrl.device import machine_description  # noqa: E402
from hfrl.evaluation import evaluate_generator  # noqa: E402
from hfrl.experiments.compare import compare_agents  # noqa: E402
from hfrl.experiments.reward import prepare_reward  # noqa: E402
from hfrl.judges import Evaluator, SyntheticLabeler  # noqa: E402
from hfrl.noise import make_noise  # noqa: E402
from hfrl.pretrain import PretrainConfig, pretrain  # noqa: E402

CLASSES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
LOCATIONS = ("data/fashion-mnist", "~/.cache/hfrl/fashion-mnist", "/usr/share/datasets/fashion-mnist")
DATASET = "fashion-mnist"


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    data_dir: str | None = None
    """Folder of the Fashion-MNIST files (default: the first of the usual places that has them)."""
    seeds: int = 2
    """Seeds (labels asked, reward fit, fine-tuning)."""
    labels: int = 200
    """Labels of the reward model."""
    agents: tuple[str, ...] = ("reward-grad", "reinforce")
    """Agents fine-tuned against that reward."""
    per_class: int = 500
    """Task images per class (500, as the embedded digits have)."""
    judge_per_class: int = 1000
    """Training images per class of each judge's classifier (other images than the task's)."""
    judge_epochs: int = 15
    """Epochs of each judge's classifier."""
    source_epochs: int = 100
    """Epochs of the source generator (early stopping as for the shipped one)."""
    upper_epochs: int = 30
    """Epochs of the supervised upper bound."""
    steps: int = 200
    """Fine-tuning updates per agent."""
    denoiser_steps: int = 1000
    """Noise2Self steps of the reward's label-free denoiser."""
    reward_steps: int = 150
    """Training steps of the reward model."""
    pool: int = 0
    """Target train images the labeler may be asked about (0: all)."""
    candidates: int = 1000
    """Pool outputs scored per round of active selection."""
    out: str = "bench-results/fashion.md"
    """Markdown report (JSON beside it; data, judges and runs under ``<stem>-runs/``)."""
    quick: bool = False
    """Tiny budgets, for tests."""


def parse(argv: list[str] | None = None) -> Args:
    """Command-line flags -> :class:`Args`."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, default=Args.seeds)
    p.add_argument("--labels", type=int, default=Args.labels)
    p.add_argument("--agents", default=",".join(Args.agents))
    p.add_argument("--steps", type=int, default=Args.steps)
    p.add_argument("--out", default=Args.out)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    args = Args(
        data_dir=a.data_dir,
        seeds=a.seeds,
        labels=a.labels,
        agents=tuple(x for x in a.agents.split(",") if x),
        steps=a.steps,
        out=a.out,
    )
    if a.quick:
        args = Args(
            data_dir=a.data_dir, seeds=1, labels=20, agents=("reward-grad",), per_class=300, judge_per_class=50,
            judge_epochs=3, source_epochs=30, upper_epochs=1, steps=2, denoiser_steps=20, reward_steps=20,
            pool=120, candidates=60, out=a.out, quick=True,
        )  # fmt: skip
    return args


def find_fashion(data_dir: str | None) -> Path | None:
    """The first folder holding the Fashion-MNIST training files, or ``None``."""
    places = [data_dir] if data_dir else [os.environ.get("HFRL_FASHION_MNIST"), *LOCATIONS]
    for place in places:
        if not place:
            continue
        path = Path(place).expanduser()
        if find_idx_files(path) is not None or (path / "FashionMNIST" / "raw").is_dir():
            return path
    return None


def stratified(labels: torch.Tensor, per_class: int, skip: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` images of each class after the first ``skip`` of a seeded shuffle."""
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        chosen.append(idx[skip : skip + per_class])
    return torch.sort(torch.cat(chosen)).values


def write_task_data(full: ImageSet, args: Args, folder: Path) -> ImageSet:
    """The task's images as IDX files in ``folder`` (what every hfrl component then loads)."""
    folder.mkdir(parents=True, exist_ok=True)
    task = full.subset(stratified(full.labels, args.per_class, 0, seed=0), DATASET)
    pixels = (task.images[:, 0] * 255).round().to(torch.uint8).numpy()
    write_idx(folder / "train-images-idx3-ubyte", pixels)
    write_idx(folder / "train-labels-idx1-ubyte", task.labels.numpy().astype(np.uint8))
    return task


def train_judges(full: ImageSet, test: ImageSet, args: Args, folder: Path) -> dict[str, Any]:
    """The labeler's and the evaluator's classifiers, on disjoint halves of images outside the task."""
    pool = full.subset(stratified(full.labels, 2 * args.judge_per_class, args.per_class, seed=0), "judges")
    info: dict[str, Any] = {}
    for name, judge in train_judge_pair(pool, test, epochs=args.judge_epochs).items():
        meta = {
            "recipe": asdict(judge.recipe),
            "test_accuracy": judge.accuracy,
            "trained_on": f"{judge.images} images",
        }
        save_checkpoint(folder / f"{name}_classifier", judge.model, "classifier", asdict(judge.config), meta)
        info[name] = {
            "arch": judge.recipe.arch,
            "images": judge.images,
            "test_accuracy": judge.accuracy,
            "seconds": judge.seconds,
            "checkpoint": str(folder / f"{name}_classifier"),
        }
        print(f"{name} classifier ({judge.recipe.arch}): test accuracy {judge.accuracy:.1%}", flush=True)
    return info


def train_generator(data_dir: Path, classes: tuple[int, ...], epochs: int, path: Path) -> dict[str, Any]:
    """Train the shipped generator's architecture on noisy images of ``classes``; save it to ``path``."""
    start = time.perf_counter()
    config = PretrainConfig(
        dataset=DATASET,
        data_dir=str(data_dir),
        source_classes=classes,
        epochs=epochs,
        patience=20,
        device="cpu",
    )
    result = pretrain(config, progress=False)
    save_checkpoint(path, result.generator, "generator", result.generator.config.to_dict(), {})
    return {"best_val_psnr": result.best_val_psnr, "seconds": time.perf_counter() - start}


def run(args: Args, data_dir: Path) -> dict[str, Any]:
    """Every measurement; returns the JSON-ready results."""
    out = Path(args.out)
    runs = out.with_name(out.stem + "-runs")
    shutil.rmtree(runs, ignore_errors=True)  # a rerun starts afresh (feedback stores refuse to be reused)
    task_dir = runs / "data"
    full = load_torchvision(DATASET, data_dir, train=True)
    test = load_torchvision(DATASET, data_dir, train=False)
    task = write_task_data(full, args, task_dir)
    judges = train_judges(full, test, args, runs / "judges")
    evaluator = Evaluator.from_pretrained(judges["evaluator"]["checkpoint"])
    labeler = SyntheticLabeler.from_pretrained(judges["labeler"]["checkpoint"])
    domains = Domains(task)

    print("== source generator (T-shirts only) and supervised upper bound", flush=True)
    source = train_generator(task_dir, (0,), args.source_epochs, runs / "source_generator")
    upper_info = train_generator(task_dir, tuple(range(10)), args.upper_epochs, runs / "upper_generator")
    bounds: dict[str, Any] = {}
    for name in ("source", "upper"):
        gen, _ = load_checkpoint(runs / f"{name}_generator", kind="generator")
        ev = evaluate_generator(gen, domains, make_noise(), evaluator, split="test")
        bounds[name] = {"target": ev.target.summary(), "source": ev.source.summary()}
        if name == "source":  # labeler-evaluator agreement on the kind of outputs people would label
            t = ev.target
            agree = labeler.is_good(t.outputs, t.clean, t.classes) == t.good
            bounds["judges_agreement"] = float(agree.float().mean())
    bounds["source"]["train"] = source
    bounds["upper"]["train"] = upper_info

    common = {"dataset": DATASET, "data_dir": str(task_dir)}

    def reward_for(seed: int) -> str:
        path, _info = prepare_reward(
            runs / f"reward-s{seed}",
            n_labels=args.labels,
            seed=seed,
            generator=runs / "source_generator",
            labeler=judges["labeler"]["checkpoint"],
            evaluator=judges["evaluator"]["checkpoint"],
            denoiser_steps=args.denoiser_steps,
            reward_steps=args.reward_steps,
            pool=args.pool,
            candidates=args.candidates,
            progress=False,
            announce=lambda _msg: None,
            **common,
        )
        return str(path)

    print(f"== {args.labels} labels, agents {', '.join(args.agents)}", flush=True)
    base = {
        **common,
        "generator": str(runs / "source_generator"),
        "evaluator": judges["evaluator"]["checkpoint"],
        "steps": args.steps,
        "eval_every": 0,
        "checkpoint_every": 0,
        "progress": False,
    }
    df = compare_agents(
        list(args.agents),
        reward=reward_for,
        seeds=list(range(args.seeds)),
        base=base,
        out=runs / "agents",
        labels_used=args.labels,
    )
    return {
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
        "data_dir": str(data_dir),
        "machine": machine_description(),
        "judges": judges,
        "bounds": bounds,
        "runs": df.to_dict(orient="records"),
    }


def report(results: dict[str, Any], minutes: float) -> str:
    """The Markdown report."""
    args, bounds, judges = results["args"], results["bounds"], results["judges"]
    runs = pd.DataFrame(results["runs"])
    lower, upper = bounds["source"]["target"]["good_rate"], bounds["upper"]["target"]["good_rate"]
    span = upper - lower if abs(upper - lower) > 1e-9 else float("nan")  # signed: a worse upper bound too
    lines = [
        "# Fashion-MNIST: the seed paper's per-image PSNR gain on its own dataset",
        "",
        f"Task: {args['per_class']} images per class of the official Fashion-MNIST training part (read from "
        f"`{results['data_dir']}`), Gaussian noise sigma 0.5; source domain: T-shirts/tops (class 0), target: "
        "the nine other classes, test split as for the digits. Starting point: the shipped generator's "
        "architecture trained on noisy T-shirts only. Labels: the synthetic labeler through the feedback "
        f"store ({args['labels']}, active selection); reward: the monotone similarity reward fitted to them; "
        f"{args['steps']} updates per agent with its defaults. Judges: Fashion-MNIST classifiers "
        f"(labeler {judges['labeler']['arch']}, evaluator {judges['evaluator']['arch']}, each trained on its own "
        f"{judges['labeler']['images']} training images outside the task, disjoint; test accuracy "
        f"{judges['labeler']['test_accuracy']:.1%} and {judges['evaluator']['test_accuracy']:.1%}) with the "
        f"digit judges' thresholds; labeler and evaluator agree on {bounds['judges_agreement']:.1%} of the "
        f"source generator's target outputs. Mean ± std over {args['seeds']} seed(s). Machine: "
        f"{results['machine']}; {minutes:.0f} min in all.",
        "",
        "| generator | target good-rate (%) | gap closed (%) | target PSNR (dB) | source PSNR (dB) | per-image "
        "gain mean (dB) | gain std (dB) | gain max (dB) | images improved (%) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| source generator (lower bound) | {lower * 100:.1f} | 0 | {bounds['source']['target']['psnr']:.2f} | "
        f"{bounds['source']['source']['psnr']:.2f} | – | – | – | – |",
        f"| supervised on clean images (upper bound) | {upper * 100:.1f} | 100 | "
        f"{bounds['upper']['target']['psnr']:.2f} | {bounds['upper']['source']['psnr']:.2f} | – | – | – | – |",
    ]
    for agent, d in runs.groupby("agent", sort=False):
        lines.append(
            f"| {agent}, {args['labels']} labels | {cell(d.target_good_rate_after)} | "
            f"{cell((d.target_good_rate_after - lower) / span)} | {cell(d.target_psnr_after, 1, 2)} | "
            f"{cell(d.source_psnr_after, 1, 2)} | {cell(d.target_psnr_gain_mean, 1, 2)} | "
            f"{cell(d.target_psnr_gain_std, 1, 2)} | {cell(d.target_psnr_gain_max, 1, 2)} | "
            f"{cell(d.target_psnr_gain_share_improved)} |"
        )
    lines += ["", "The seed paper reports +1.61 ± 2.78 dB per image on Fashion-MNIST."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Run, print and write the report; returns its text."""
    args = parse(argv)
    torch.set_num_threads(1)  # as bench_finetune: steadier when other work shares the cores
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data_dir = find_fashion(args.data_dir)
    if data_dir is None:
        looked = args.data_dir or ", ".join(["$HFRL_FASHION_MNIST", *LOCATIONS])
        text = (
            "# Fashion-MNIST\n\nSkipped: no Fashion-MNIST files found (looked in "
            f"{looked}). Put the four IDX files there (plain or .gz) or pass --data-dir.\n"
        )
        print(text)
        out.write_text(text)
        return text
    start = time.perf_counter()
    results = run(args, data_dir)
    minutes = (time.perf_counter() - start) / 60
    results["minutes"] = minutes
    out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=float))
    text = report(results, minutes)
    out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
