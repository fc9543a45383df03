"""Benchmark censored sampling (Yoon et al. 2023) on the shipped crossed-7 DDPM.

    python scripts/bench_censor.py [--n 1000] [--steps 25] [--out bench-results/censor.md] [--device auto] [--quick]

What it does, in order:

1. Samples ``--n`` images without guidance (the baseline) and a separate pool of ``--pool`` images for
   labelling, from fixed seeds.
2. For each label budget (label until 5 and until 10 malign samples are found, the paper's budget being
   10), puts the pool to the synthetic labeler through the feedback store, page by page, exactly as
   ``hfrl censor --label`` does; the labels used are counted, skips included.
3. Trains the paper's three reward setups from those labels: ``single`` (one model, all malign + 10
   benign), ``union`` (one model on the union of the ensemble's data) and ``ensemble`` (5 models, 10
   malign + 10 benign each, product of probabilities); time-dependent models for classifier guidance on
   ``x_t``, and one time-independent ensemble for forward (universal) guidance on ``x0_hat``.
4. Samples ``--n`` images with each, from the same initial noise as the baseline (a paired comparison),
   with plain guidance and with backward guidance + recurrence.

Every malign rate is the independent evaluator's (a ``lenet`` stroke detector trained on other 7s, other
strokes, another seed); the labeler's rate — what the reward models learned from — is shown beside it.
*Fidelity* is the share the digit evaluator reads as a 7. Times are wall-clock seconds on this machine.
Goal (the issue): >= 10x fewer malign samples with <= 60 labels.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hfrl.censoring import (
    CensorLabels,
    CensorReport,
    GuidanceConfig,
    LabelBudget,
    MalignEvaluator,
    MalignLabeler,
    RewardTrainConfig,
    censored_sample,
    collect_labels,
    measure,
    timed,
    train_reward_setup,
)
from hfrl.device import cpu_name, resolve_device, seed_everything
from hfrl.diffusion import DDIMScheduler, load_ddpm
from hfrl.feedback import FeedbackQueue
from hfrl.judges import Evaluator

GOAL_REDUCTION = 10.0
GOAL_LABELS = 60
CLASSIFIER_WEIGHT = {"single": 5.0, "union": 5.0, "ensemble": 1.0}
"""Classifier-guidance weights (the paper's MNIST values: 5 for one model, 1 for the product of five)."""
FORWARD_WEIGHT = 2.0
BACKWARD = {"backward_steps": 5, "backward_lr": 0.05, "recurrences": 2}
"""Backward guidance (5 Adam steps on x0_hat) and recurrence R = 2 (the paper uses R = 4 on a GPU)."""


@dataclass
class Row:
    """One line of the table."""

    setup: str
    labels: str
    guidance: str
    report: CensorReport
    train_seconds: float = 0.0


def fmt_rate(value: float) -> str:
    return f"{100 * value:.1f} %"


def table(rows: list[Row], baseline: CensorReport) -> str:
    head = "| setup | labels (malign/benign) | guidance | malign (evaluator) | reduction | malign (labeler) | fidelity (7) | sampling s | reward training s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        rate = r.report.malign_rate
        reduction = (
            "—"
            if r.setup == "baseline"
            else (f"{baseline.malign_rate / rate:.1f}x" if rate > 0 else "∞ (0 malign)")
        )
        lines.append(
            f"| {r.setup} | {r.labels} | {r.guidance} | {fmt_rate(rate)} | {reduction} | "
            f"{fmt_rate(r.report.labeler_malign_rate)} | {fmt_rate(r.report.fidelity)} | {r.report.seconds:.1f} | {r.train_seconds:.1f} |"
        )
    return "\n".join(lines)


def get_labels(pool: torch.Tensor, malign: int, labeler: MalignLabeler, page: int) -> CensorLabels:
    """Labels through the feedback store, as ``hfrl censor --label`` collects them."""
    with tempfile.TemporaryDirectory() as tmp, FeedbackQueue(Path(tmp) / "feedback.sqlite") as queue:
        return collect_labels(pool, queue, LabelBudget(malign=malign, page=page), labeler=labeler)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per row (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default: %(default)s)")
    parser.add_argument("--pool", type=int, default=400, help="samples generated for labelling")
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10], help="malign samples to find")
    parser.add_argument(
        "--iterations", type=int, default=RewardTrainConfig.iterations, help="reward training steps"
    )
    parser.add_argument("--page", type=int, default=5, help="samples per labelling query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="bench-results/censor.md")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (for tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.steps, args.pool, args.budgets, args.iterations = 16, 4, 160, [2], 20
    seed_everything(args.seed)
    device = resolve_device(args.device)
    started = time.perf_counter()
    model = load_ddpm(device=device)
    scheduler = DDIMScheduler(model.schedule, args.steps)
    evaluator = MalignEvaluator.from_pretrained(device=device)
    judge = MalignLabeler.from_pretrained(device=device)
    digits = Evaluator.from_pretrained(device=device).classifier

    def sample(reward: Any = None, guidance: GuidanceConfig | None = None) -> CensorReport:
        gen = torch.Generator().manual_seed(args.seed + 1)  # the same x_T for every row
        images, seconds = timed(
            lambda: censored_sample(model, scheduler, args.n, reward, guidance, generator=gen)
        )
        return measure(images, evaluator, judge, digits, seconds)

    baseline = sample()
    rows = [Row("baseline", "0", "none", baseline)]
    print(f"baseline: malign {fmt_rate(baseline.malign_rate)}, {baseline.seconds:.1f} s", flush=True)
    pool = censored_sample(
        model, scheduler, args.pool, generator=torch.Generator().manual_seed(args.seed + 2)
    )
    train = RewardTrainConfig(iterations=args.iterations, seed=args.seed)

    def fit(labels: CensorLabels, setup: str, time_dependent: bool = True) -> tuple[Any, float]:
        start = time.perf_counter()
        reward = train_reward_setup(
            labels, setup, time_dependent=time_dependent, train=train, schedule=model.schedule, device=device
        )
        return reward, time.perf_counter() - start

    paper_budget = max(args.budgets)
    for budget in args.budgets:
        labels = get_labels(
            pool, budget, MalignLabeler.from_pretrained(device=device, seed=args.seed), args.page
        )
        tag = f"{labels.labels_used} ({labels.n_malign}/{labels.n_benign})"
        print(f"budget {budget} malign: {tag} labels", flush=True)
        setups = ["single", "union", "ensemble"] if not args.quick else ["single", "ensemble"]
        for setup in setups:
            reward, seconds = fit(labels, setup)
            variants = [GuidanceConfig(classifier_weight=CLASSIFIER_WEIGHT[setup])]
            if budget == paper_budget:
                variants.append(GuidanceConfig(classifier_weight=CLASSIFIER_WEIGHT[setup], **BACKWARD))
            for guidance in variants:
                report = sample(reward, guidance)
                rows.append(Row(setup, tag, guidance.describe(), report, seconds))
                print(
                    f"  {setup} [{guidance.describe()}]: malign {fmt_rate(report.malign_rate)}, {report.seconds:.1f} s",
                    flush=True,
                )
        if budget == paper_budget:
            reward, seconds = fit(labels, "ensemble", time_dependent=False)
            guidance = GuidanceConfig(forward_weight=FORWARD_WEIGHT)
            report = sample(reward, guidance)
            rows.append(Row("ensemble, time-independent", tag, guidance.describe(), report, seconds))
            print(
                f"  time-independent ensemble [{guidance.describe()}]: malign {fmt_rate(report.malign_rate)}",
                flush=True,
            )

    censored = [r for r in rows if r.setup != "baseline"]
    best = min(censored, key=lambda r: r.report.malign_rate)
    reached = [
        r for r in censored
        if int(r.labels.split()[0]) <= GOAL_LABELS and r.report.malign_rate * GOAL_REDUCTION <= baseline.malign_rate
    ]  # fmt: skip
    threads = torch.get_num_threads()
    text = "\n".join(
        [
            "# Censored sampling benchmark (crossed 7s)",
            "",
            f"{datetime.date.today().isoformat()}; {args.n} samples per row, DDIM {args.steps} steps, "
            f"label pool {args.pool}, reward iterations {args.iterations}, seed {args.seed}; device {device}; "
            f"CPU {cpu_name()}, nproc {len(__import__('os').sched_getaffinity(0))}, torch threads {threads}; "
            f"total {time.perf_counter() - started:.0f} s.",
            "",
            table(rows, baseline),
            "",
            f"Best: {best.setup} [{best.guidance}] with {best.labels} labels: malign {fmt_rate(baseline.malign_rate)} -> "
            f"{fmt_rate(best.report.malign_rate)} (evaluator), fidelity {fmt_rate(best.report.fidelity)}.",
            f"Goal (>= {GOAL_REDUCTION:g}x fewer malign with <= {GOAL_LABELS} labels): "
            + ("met by " + "; ".join(f"{r.setup} [{r.guidance}]" for r in reached) if reached else "not met")
            + ".",
            "",
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
