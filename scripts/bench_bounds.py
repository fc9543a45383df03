"""Each task's references: the source generator, every label-free baseline and the supervised bound.

A feedback result means something only beside what the user could get without feedback. For each named
task (:mod:`hfrl.tasks`) this script measures, on the task's test split with the independent evaluator
(the same inputs for every row, noise seed 0 as every trainer's final evaluation):

* ``source``: the task's shipped source generator (the lower bound);
* the label-free baselines, each trained on the noisy target-domain train inputs only (no clean target
  image, no label, no reward), run by name through the same agents as the feedback methods:
  ``n2s`` with a one-pixel blind spot, with wide blind spots (``radius``) and with pixel-shuffle
  down-sampling (``stride``), and ``n2s-finetune`` (the source generator fine-tuned with the blind-spot
  loss and the auxiliary/consistency regularisers);
* ``classical``: the scikit-image denoiser and parameter with the best PSNR on the *source* domain's
  noisy/clean validation pairs (:func:`hfrl.classical.tune_classical`);
* ``best label-free``: the best of the rows above by target good-rate (generous to the baselines: it is
  chosen on the test split);
* ``supervised``: the source generator's architecture trained on noisy/clean *target* train pairs (the
  upper bound, which no feedback method may use). ``--save-supervised`` ships it as
  ``hfrl/assets/supervised_<task>`` for the demo's fourth column.

A task whose images no judge reads (``patches-colour``: RGB patches, no evaluator named) has no
good-rate: its rows report PSNR and SSIM against the clean images only (good-rates are ``null`` in the
JSON and ``–`` in the table), and ``best label-free`` is the row of best target PSNR.

Usage::

    python scripts/bench_bounds.py [--tasks digits-correlated,digits-white] [--steps 1000] [--quick]
        [--baselines "n2s,n2s-finetune radius 1"]

``bench-results/bounds_colour.md`` is ``--tasks patches-colour --baselines "n2s,n2s stride 2,n2s-finetune
radius 1" --steps 300 --epochs 40 --out bench-results/bounds_colour.md`` (about 10 minutes).

Writes ``bench-results/bounds.md`` (a table per task) and ``bench-results/bounds.json`` (every number).
About 10 minutes per task on two CPU cores; ``--quick`` (tiny budgets, for tests) about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hfrl.agents import make_config, make_trainer
from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.classical import tune_classical
from hfrl.data import Domains, load_dataset
from hfrl.device import machine_description
from hfrl.evaluation import Evaluation, evaluate_generator
from hfrl.judges import Evaluator, digit_judge_applies
from hfrl.pretrain import PretrainConfig, pretrain
from hfrl.tasks import ASSETS, TASKS, Task, get_task

BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "n2s": ("n2s", {}),
    "n2s radius 1": ("n2s", {"radius": 1}),
    "n2s radius 2": ("n2s", {"radius": 2, "grid": 6}),
    "n2s stride 2": ("n2s", {"stride": 2}),
    "n2s stride 3": ("n2s", {"stride": 3}),
    "n2s-finetune radius 1": ("n2s-finetune", {"radius": 1, "steps": 300}),
}
"""Row name -> (agent, config fields) of every trained label-free baseline."""


def supervised_name(task: Task) -> str:
    """Asset name of a task's supervised upper-bound generator."""
    return "supervised_" + task.name.replace("-", "_")


def row(name: str, kind: str, evaluation: Evaluation, seconds: float, **extra: Any) -> dict[str, Any]:
    """One table row: target good-rate, PSNR and SSIM; source good-rate, PSNR and SSIM; the noisy inputs' PSNR.

    Good-rates are ``None`` where no judge measured them (images no shipped classifier reads).
    """
    t, s = evaluation.target.summary(), evaluation.source.summary()
    return {
        "method": name,
        "kind": kind,
        "target_good_rate": t["good_rate"] if evaluation.target.judged else None,
        "target_psnr": t["psnr"],
        "target_ssim": t["ssim"],
        "source_good_rate": s["good_rate"] if evaluation.source.judged else None,
        "source_psnr": s["psnr"],
        "source_ssim": s["ssim"],
        "target_psnr_noisy": t["psnr_noisy"],
        "source_psnr_noisy": s["psnr_noisy"],
        "seconds": seconds,
        **extra,
    }


def judged(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows have good-rates (a judge read the task's images)."""
    return all(r["target_good_rate"] is not None for r in rows)


def score(r: dict[str, Any]) -> float:
    """What ranks a row: its target good-rate, or its target PSNR on a task without a judge."""
    return r["target_psnr"] if r["target_good_rate"] is None else r["target_good_rate"]


def report_line(task: Task, r: dict[str, Any]) -> str:
    """One line about a finished row."""
    good = "" if r["target_good_rate"] is None else f"{r['target_good_rate']:.1%}, "
    return f"[{task.name}] {r['method']}: {good}target {r['target_psnr']:.2f} dB"


def measure_task(
    task: Task,
    steps: int,
    epochs: int,
    save_supervised: bool,
    seed: int,
    baselines: tuple[str, ...] = tuple(BASELINES),
) -> list[dict[str, Any]]:
    """Every reference row of one task (of the trained label-free baselines, those named in ``baselines``)."""
    data = load_dataset(task.dataset, task.data_dir)
    domains = Domains(data, task.source_classes, task.target_classes, task.split_seed)
    noise = task.noise_model()
    if task.evaluator is None and not digit_judge_applies(data.image_shape):
        evaluator = Evaluator(None)  # no judge reads these images: PSNR/SSIM only
    else:
        evaluator = Evaluator.from_pretrained(task.evaluator)

    def evaluate(generator: torch.nn.Module) -> Evaluation:
        return evaluate_generator(generator, domains, noise, evaluator, split="test", seed=0)

    rows = []
    t0 = time.perf_counter()
    source, _ = load_checkpoint(task.generator_path(), kind="generator")
    rows.append(row("source generator", "source", evaluate(source), time.perf_counter() - t0))
    print(report_line(task, rows[-1]), flush=True)

    t0 = time.perf_counter()
    pairs = domains.source("val").images
    choice = tune_classical(noise(pairs, torch.Generator().manual_seed(seed + 5)), pairs)
    name = f"classical ({choice.denoiser.method} {choice.denoiser.value:g})"
    rows.append(row(name, "label-free", evaluate(choice.denoiser), time.perf_counter() - t0))
    print(report_line(task, rows[-1]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for label in baselines:
            agent, fields = BASELINES[label]
            t0 = time.perf_counter()
            fields = (
                {"steps": steps, **fields}
                if agent == "n2s"
                else {**fields, "steps": min(steps, fields["steps"])}
            )
            config = make_config(agent, task=task.name, seed=seed, progress=False, device="cpu", **fields)
            result = make_trainer(agent, config, run_dir=Path(tmp) / label.replace(" ", "-")).train()
            assert result.evaluation is not None
            rows.append(
                row(label, "label-free", result.evaluation, time.perf_counter() - t0, steps=result.steps)
            )
            print(report_line(task, rows[-1]), flush=True)

    t0 = time.perf_counter()
    config = PretrainConfig(
        task=task.name, source_classes=task.target_classes, epochs=epochs, seed=seed, device="cpu"
    )
    supervised = pretrain(config, data=data, progress=False).generator
    rows.append(
        row("supervised (clean targets)", "upper bound", evaluate(supervised), time.perf_counter() - t0)
    )
    print(report_line(task, rows[-1]), flush=True)
    if save_supervised:
        meta = {
            "pretrain": asdict(config),
            "task": task.name,
            "note": "upper bound: trained on clean targets",
        }
        save_checkpoint(
            ASSETS / supervised_name(task), supervised, "generator", supervised.config.to_dict(), meta
        )

    free = [r for r in rows if r["kind"] in ("source", "label-free")]
    best = max(free, key=score)
    rows.insert(
        len(rows) - 1, {**best, "method": f"best label-free = {best['method']}", "kind": "best label-free"}
    )
    return rows


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    """One table per task; a task without a judge gets PSNR/SSIM columns (and the noisy inputs' PSNR)."""
    out = [f"Machine: {machine_description()}\n"]
    for name, rows in results.items():
        out.append(f"### {name}: {get_task(name).description}\n")
        if judged(rows):
            out += [
                "| method | target good-rate | target PSNR | target SSIM | source good-rate | source PSNR | seconds |",
                "| --- | --: | --: | --: | --: | --: | --: |",
            ]
            for r in rows:
                out.append(
                    f"| {r['method']} | {r['target_good_rate']:.1%} | {r['target_psnr']:.2f} dB | "
                    f"{r['target_ssim']:.3f} | {r['source_good_rate']:.1%} | {r['source_psnr']:.2f} dB | "
                    f"{r['seconds']:.0f} |"
                )
        else:
            first = rows[0]
            out += [
                f"No judge reads these images: good-rates are not measured (–). Noisy inputs: target "
                f"{first['target_psnr_noisy']:.2f} dB, source {first['source_psnr_noisy']:.2f} dB.\n",
                "| method | target good-rate | target PSNR | target SSIM | source PSNR | source SSIM | seconds |",
                "| --- | --: | --: | --: | --: | --: | --: |",
            ]
            for r in rows:
                out.append(
                    f"| {r['method']} | – | {r['target_psnr']:.2f} dB | {r['target_ssim']:.3f} | "
                    f"{r['source_psnr']:.2f} dB | {r['source_ssim']:.3f} | {r['seconds']:.0f} |"
                )
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", default="digits-correlated,digits-white", help="comma-separated task names"
    )
    parser.add_argument("--steps", type=int, default=1000, help="updates of each n2s baseline")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of the supervised bound")
    parser.add_argument(
        "--baselines",
        default=",".join(BASELINES),
        help=f"comma-separated trained label-free baselines (default: all of {', '.join(BASELINES)})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-supervised", action="store_true", help="ship the supervised generators")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (for tests)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bounds.md"))
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; expected some of {', '.join(TASKS)}")
    baselines = tuple(b.strip() for b in args.baselines.split(",") if b.strip())
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        parser.error(f"unknown baseline(s) {', '.join(unknown)}; expected some of {', '.join(BASELINES)}")
    steps, epochs = (5, 1) if args.quick else (args.steps, args.epochs)
    torch.set_num_threads(1)
    results = {
        name: measure_task(get_task(name), steps, epochs, args.save_supervised, args.seed, baselines)
        for name in names
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results))
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "machine": machine_description(),
                "steps": steps,
                "epochs": epochs,
                "baselines": list(baselines),
                "tasks": results,
            },
            indent=2,
        )
    )
    print(markdown(results))
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
