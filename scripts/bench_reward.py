"""Reward-model benchmark: agreement with the independent evaluator versus the number of labels.

The synthetic labeler labels outputs of the shipped generator on noisy target-domain *train* images (it
sees the clean images, as a person would see the digit); reward models learn from those labels and the
(noisy, output) pairs only. They are scored on held-out target-domain *test* outputs against the
independent evaluator, for 25, 50, 100, 200 and 500 labels:

* CNNs over the output alone and over (noisy, output, residual), the latter with and without the
  Lee-style auxiliary loss;
* the similarity reward (logistic regression on SSIM, correlation and RMSE between the output and a
  self-supervised denoiser's estimate of the clean input, :class:`hfrl.rewards.SimilarityReward`), single,
  with the auxiliary loss, and as ensembles of K members on bootstrap samples with labels chosen at random
  or actively (by ensemble disagreement, in rounds 25 -> 50 -> 100 -> 200 -> 500, each round asking about
  the outputs of the unlabelled pool the current ensemble disagrees on most).

Reference rows: the majority class (every output good, or every one bad); the labeler itself used as a
predictor (its own verdicts against the evaluator's — the ceiling for a model that imitates the labeler
perfectly); the labeler's own rule applied with the denoiser's estimate in place of the clean image and
the true class given (what the judges' test can be from what a reward model sees), also with its thresholds
tuned on the test verdicts themselves (an optimistic ceiling for that approach); and SSIM to the
denoiser's estimate without any label (AUC only).
At 200 labels it also reports agreement on outputs of a *different* generator (a U-Net pre-trained here),
sensitivity to the input (does the true noisy input score higher than another one for the same output?),
and exploitability (the evaluator's good-rate after 20 steps of gradient ascent on the reward, starting
from the generator's outputs).

Usage::

    python scripts/bench_reward.py [--seeds 3] [--out bench-results/reward.md] [--quick]

Writes a Markdown report (tables), a JSON file with every number, and a PNG plot next to ``--out``.
The full run takes 10-25 minutes on two CPU cores (more when other jobs share them); ``--quick`` about
20 seconds (for tests).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.data import Domains, load_embedded_mnist
from hfrl.device import machine_description, seed_everything
from hfrl.evaluation import generate
from hfrl.judges import Evaluator, Judgement, SyntheticLabeler, asset_path
from hfrl.metrics import ssim
from hfrl.noise import make_noise
from hfrl.rewards import (
    DenoiserConfig,
    DisagreementSelector,
    LabelledSamples,
    RewardModel,
    RewardModelConfig,
    RewardTrainingConfig,
    SelfSupervisedDenoiser,
    UnlabelledPairs,
    binary_report,
    make_reward_model,
    roc_auc,
    similarity_features,
    train_denoiser,
    train_ensemble,
    train_reward_model,
)


@dataclass
class Args:
    """Benchmark settings (command-line flags of the same names)."""

    seeds: int = 3
    """Seeds per cell (label choice, initialisation, training)."""
    label_counts: tuple[int, ...] = (25, 50, 100, 200, 500)
    """Numbers of labels."""
    members: int = 3
    """Ensemble members."""
    steps: int = RewardTrainingConfig.steps
    """Training steps per model."""
    aux_weight: float = 0.5
    """Weight of the auxiliary loss in the ``+ aux`` rows."""
    denoiser_steps: int = DenoiserConfig.steps
    """Noise2Self steps of the self-supervised denoiser behind the similarity rows."""
    probe_at: int = 200
    """Label count at which the extra checks (other generator, input sensitivity, exploitability) run."""
    pool: int = 0
    """Candidate outputs to label (0 = all 2,700 target train images)."""
    test: int = 0
    """Held-out outputs (0 = all 1,350 target test images)."""
    other_generator: bool = True
    """Pre-train a U-Net generator (~30 s) and report agreement on its outputs."""
    quick: bool = False
    """A few seconds: tiny pool, one seed, two label counts, a few steps (for tests)."""
    out: str = "bench-results/reward.md"
    """Markdown report; ``.json`` and ``.png`` are written beside it."""
    threads: int = 2
    """torch CPU threads (1 is steadier when other jobs share the cores)."""
    methods: tuple[str, ...] = field(default_factory=tuple)
    """Only these methods (default: all)."""


@dataclass(frozen=True)
class Method:
    """One row of the table."""

    arch: str = "cnn"
    inputs: tuple[str, ...] = ("output",)
    members: int = 1
    aux: bool = False
    active: bool = False

    @property
    def needs_denoiser(self) -> bool:
        """Whether the row's model holds the self-supervised denoiser."""
        return self.arch == "similarity" or any(c.startswith("denoised") for c in self.inputs)


PAIR = ("noisy", "output", "residual")


def methods(args: Args) -> dict[str, Method]:
    k = args.members
    all_methods = {
        "CNN, output only": Method(inputs=("output",)),
        "CNN, (noisy, output, residual)": Method(inputs=PAIR),
        "CNN, (noisy, output, residual) + aux": Method(inputs=PAIR, aux=True),
        "similarity": Method(arch="similarity"),
        "similarity + aux": Method(arch="similarity", aux=True),
        f"similarity, ensemble x{k}": Method(arch="similarity", members=k),
        f"similarity, ensemble x{k} + active": Method(arch="similarity", members=k, active=True),
    }
    if args.methods:
        return {k: v for k, v in all_methods.items() if any(k.startswith(m) for m in args.methods)}
    return all_methods


@dataclass
class Data:
    """The labelling pool and the held-out outputs, with the judges' verdicts."""

    pool_noisy: torch.Tensor
    pool_output: torch.Tensor
    pool_label: torch.Tensor  # labeler verdicts
    test_noisy: torch.Tensor
    test_output: torch.Tensor
    test_clean: torch.Tensor
    test_classes: torch.Tensor
    test_ev: torch.Tensor  # evaluator verdicts
    test_lab: torch.Tensor  # labeler verdicts (same clean images)
    test_estimate: torch.Tensor  # the denoiser's estimate of the clean test images
    test_plugin: torch.Tensor  # the labeler's rule with the denoiser's estimate in place of the clean image
    # ... with thresholds chosen on the evaluator's test verdicts (optimistic)
    test_plugin_tuned: torch.Tensor
    other_output: torch.Tensor | None
    other_ev: torch.Tensor | None
    denoiser: SelfSupervisedDenoiser
    denoiser_info: dict[str, float]


def make_data(args: Args, evaluator: Evaluator) -> Data:
    domains = Domains(load_embedded_mnist())
    generator, _ = load_checkpoint(asset_path("denoiser_source"), kind="generator")
    noise = make_noise()
    labeler = SyntheticLabeler.from_pretrained()
    train, test = domains.target("train"), domains.target("test")
    if args.pool:
        train = train.subset(
            torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[: args.pool]
        )
    if args.test:
        test = test.subset(torch.randperm(len(test), generator=torch.Generator().manual_seed(2))[: args.test])
    pool_noisy = noise(train.images, torch.Generator().manual_seed(1000))
    pool_output = generate(generator, pool_noisy)
    test_noisy = noise(test.images, torch.Generator().manual_seed(2000))
    test_output = generate(generator, test_noisy)
    other_output = other_ev = None
    if args.other_generator:
        from hfrl.pretrain import PretrainConfig, pretrain

        unet = pretrain(
            PretrainConfig(family="unet", width=16, epochs=40, device="cpu"), progress=False
        ).generator
        other_output = generate(unet, test_noisy)
        other_ev = evaluator.is_good(other_output, test.images, test.labels).float()
    # label-free: the self-supervised denoiser sees the pool's noisy inputs only, once for every row and seed
    denoiser, info = train_denoiser(pool_noisy, DenoiserConfig(steps=args.denoiser_steps, seed=0))
    with torch.no_grad():
        estimate = denoiser(test_noisy)
    info["ssim_to_clean_test"] = float(ssim(estimate, test.images).mean())  # report only
    test_ev = evaluator.is_good(test_output, test.images, test.labels).float()
    plugin = labeler.judge(test_output, estimate, test.labels)
    return Data(
        denoiser=denoiser,
        denoiser_info=info,
        pool_noisy=pool_noisy,
        pool_output=pool_output,
        pool_label=labeler.is_good(pool_output, train.images, train.labels).float(),
        test_noisy=test_noisy,
        test_output=test_output,
        test_clean=test.images,
        test_classes=test.labels,
        test_ev=test_ev,
        test_lab=labeler.is_good(test_output, test.images, test.labels).float(),
        test_estimate=estimate,
        test_plugin=plugin.good.float(),
        test_plugin_tuned=best_thresholds(plugin, test_ev),
        other_output=other_output,
        other_ev=other_ev,
    )


def best_thresholds(judgement: Judgement, target: torch.Tensor) -> torch.Tensor:
    """The rule ``prob, SSIM, correlation >= thresholds`` with the thresholds that best match ``target``.

    Chosen on the very verdicts it is scored against, so its agreement is an optimistic ceiling for any
    model that applies the judges' rule to the same features.
    """
    best, best_agree = judgement.good.float(), -1.0
    for p in (0.05, 0.1, 0.2, 0.3, 0.5):
        for s in torch.linspace(0.3, 0.9, 25).tolist():
            for c in torch.linspace(0.3, 0.9, 13).tolist():
                verdict = (
                    (judgement.prob >= p) & (judgement.ssim >= s) & (judgement.correlation >= c)
                ).float()
                agree = float((verdict == target).float().mean())
                if agree > best_agree:
                    best, best_agree = verdict, agree
    return best


def exploit(model: RewardModel, data: Data, evaluator: Evaluator, n: int = 300, steps: int = 20) -> float:
    """Evaluator good-rate after ``steps`` of Adam on the outputs' logits to maximise the reward."""
    x, o = data.test_noisy[:n], data.test_output[:n]
    z = torch.logit(o.clamp(1e-3, 1 - 1e-3)).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.02)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        loss = -model(x, torch.sigmoid(z)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    moved = torch.sigmoid(z).detach()
    return evaluator.good_rate(moved, data.test_clean[:n], data.test_classes[:n])


def score(model: RewardModel, data: Data, evaluator: Evaluator, probe: bool) -> dict[str, float]:
    p = model.predict_th(data.test_noisy, data.test_output)
    ev, lab = binary_report(p, data.test_ev), binary_report(p, data.test_lab)
    row = {
        "agree_ev": ev["accuracy"],
        "auc_ev": ev["auc"],
        "agree_lab": lab["accuracy"],
        "auc_lab": lab["auc"],
        "ece_lab": lab["ece"],
    }
    if probe:
        if data.other_output is not None:
            q = model.predict_th(data.test_noisy, data.other_output)
            other = binary_report(q, data.other_ev)
            row["agree_other"], row["auc_other"] = other["accuracy"], other["auc"]
        shuffled = torch.roll(data.test_noisy, 1, dims=0)
        true_s = model.predict_th(data.test_noisy, data.test_output, logits=True)
        wrong_s = model.predict_th(shuffled, data.test_output, logits=True)
        row["input_sensitivity"] = roc_auc(
            torch.cat([true_s, wrong_s]), torch.cat([torch.ones(len(true_s)), torch.zeros(len(wrong_s))])
        )
        row["exploit_good_rate"] = exploit(model, data, evaluator)
    return row


def train(
    method: Method,
    data: LabelledSamples,
    cfg: RewardTrainingConfig,
    unlabelled: UnlabelledPairs,
    denoiser: SelfSupervisedDenoiser,
) -> RewardModel:
    mcfg = RewardModelConfig(arch=method.arch, inputs=method.inputs)
    cfg = replace(cfg, aux_weight=cfg.aux_weight if method.aux else 0.0)
    u = unlabelled if method.aux else None
    den = denoiser if method.needs_denoiser else None
    if method.members > 1:
        member = lambda seed: make_reward_model(mcfg, seed, denoiser=den)  # noqa: E731
        return train_ensemble(data, method.members, config=cfg, unlabelled=u, make_member=member)[0]
    return train_reward_model(make_reward_model(mcfg, cfg.seed, denoiser=den), data, cfg, u).model


def run_method(
    method: Method, args: Args, data: Data, evaluator: Evaluator, cfg: RewardTrainingConfig, seed: int,
    log: Callable[[str], None],
) -> dict[int, dict[str, float]]:  # fmt: skip
    """Scores per label count for one method and seed."""
    n_pool = len(data.pool_label)
    unlabelled = UnlabelledPairs(data.pool_noisy, data.pool_output)
    g = torch.Generator().manual_seed(10_000 + seed)
    order = torch.randperm(n_pool, generator=g)  # nested random label sets: n=50 contains n=25
    chosen = order[: args.label_counts[0]]
    results: dict[int, dict[str, float]] = {}
    cfg = replace(cfg, seed=seed)
    for n in args.label_counts:
        n = min(n, n_pool)
        if method.active and len(chosen) < n:
            pass  # filled below, from the previous round's model
        elif not method.active:
            chosen = order[:n]
        labelled = LabelledSamples(data.pool_noisy[chosen], data.pool_output[chosen], data.pool_label[chosen])
        start = time.perf_counter()
        model = train(method, labelled, cfg, unlabelled, data.denoiser)
        row = score(model, data, evaluator, probe=n == args.probe_at)
        row["seconds"] = time.perf_counter() - start
        results[n] = row
        log(
            f"  n={n:4d} seed={seed}: agree_ev {row['agree_ev']:.3f} auc_ev {row['auc_ev']:.3f} ({row['seconds']:.1f} s)"
        )
        if method.active:
            # next round: ask about the unlabelled outputs this ensemble disagrees on most
            following = [m for m in args.label_counts if m > n]
            if following:
                rest = torch.tensor(sorted(set(range(n_pool)) - set(chosen.tolist())), dtype=torch.long)
                k = min(following[0], n_pool) - len(chosen)
                pick = DisagreementSelector(model, diversity_pool=2.0).select(
                    data.pool_noisy[rest], data.pool_output[rest], k, torch.Generator().manual_seed(seed + n)
                )
                chosen = torch.cat([chosen, rest[pick]])
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v == v], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())


def cell(values: list[float], pct: bool = True) -> str:
    m, s = mean_std(values)
    if m != m:
        return "–"
    return f"{100 * m:.1f} ± {100 * s:.1f}" if pct else f"{m:.3f} ± {s:.3f}"


def report(
    args: Args, data: Data, results: dict[str, dict[int, list[dict[str, float]]]], seconds: float
) -> str:
    counts = [n for n in args.label_counts if n <= len(data.pool_label)]
    ev_rate = float(data.test_ev.mean())
    majority = max(ev_rate, 1.0 - ev_rate)
    features = similarity_features(data.test_output, data.test_estimate)
    label_free = {
        name: roc_auc(features[:, k] * sign, data.test_ev)
        for k, (name, sign) in enumerate((("SSIM", 1), ("correlation", 1), ("RMSE", -1)))
    }
    den = data.denoiser_info
    lab_agree = float((data.test_lab == data.test_ev).float().mean())
    plugin_agree = float((data.test_plugin == data.test_ev).float().mean())
    tuned_agree = float((data.test_plugin_tuned == data.test_ev).float().mean())
    lab_auc = roc_auc(data.test_lab, data.test_ev)
    head = "| method | " + " | ".join(f"{n} labels" for n in counts) + " |"
    sep = "| --- |" + " --- |" * len(counts)
    lines = [
        "# Reward models: agreement with the evaluator vs number of labels",
        "",
        f"Held-out: {len(data.test_ev)} target-domain test outputs of the shipped generator "
        f"(evaluator good-rate {100 * ev_rate:.1f} %). Labels: synthetic labeler (no flips) on "
        f"{len(data.pool_label)} target train outputs (labeler good-rate {100 * float(data.pool_label.mean()):.1f} %). "
        f"Mean ± std over {args.seeds} seed(s); {args.steps} training steps per model. "
        f"Machine: {machine_description()}; {seconds / 60:.1f} min in all.",
        "",
        f"The similarity rows compare each output with a self-supervised (Noise2Self) denoiser's estimate of the "
        f"clean input, trained on the pool's {len(data.pool_label)} noisy inputs alone ({den['seconds']:.0f} s; "
        f"SSIM of its estimate to the clean test digits, for context only: {den['ssim_to_clean_test']:.2f}). "
        "Without any label, ranking outputs by SSIM to that estimate gives the AUC in the 'no labels' row.",
        "",
        "## Agreement with the evaluator (%, reward >= 0.5 read as good)",
        "",
        head,
        sep,
        f"| majority class (always {'good' if ev_rate >= 0.5 else 'bad'}) | "
        + " | ".join(f"{100 * majority:.1f}" for _ in counts)
        + " |",
        "| the labeler itself (ceiling) | " + " | ".join(f"{100 * lab_agree:.1f}" for _ in counts) + " |",
        "| the labeler's rule on the denoiser's estimate instead of the clean image, true class given | "
        + " | ".join(f"{100 * plugin_agree:.1f}" for _ in counts)
        + " |",
        "| ... with its thresholds tuned on these test verdicts (optimistic) | "
        + " | ".join(f"{100 * tuned_agree:.1f}" for _ in counts)
        + " |",
    ]
    for name, by_n in results.items():
        lines.append(
            f"| {name} | " + " | ".join(cell([r["agree_ev"] for r in by_n.get(n, [])]) for n in counts) + " |"
        )
    lines += ["", "## ROC AUC against the evaluator's verdicts (%)", "", head, sep,
              "| the labeler's verdicts | " + " | ".join(f"{100 * lab_auc:.1f}" for _ in counts) + " |",
              "| similarity to the denoised input, no labels (SSIM) | "
              + " | ".join(f"{100 * label_free['SSIM']:.1f}" for _ in counts) + " |"]  # fmt: skip
    for name, by_n in results.items():
        lines.append(
            f"| {name} | " + " | ".join(cell([r["auc_ev"] for r in by_n.get(n, [])]) for n in counts) + " |"
        )
    lines += ["", "## Agreement with the labeler on held-out outputs (%)", "", head, sep]
    for name, by_n in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(cell([r["agree_lab"] for r in by_n.get(n, [])]) for n in counts)
            + " |"
        )
    probe = args.probe_at
    if any(probe in by_n for by_n in results.values()):
        lines += [
            "",
            f"## At {probe} labels: calibration, another generator, input sensitivity, exploitability",
            "",
            "ECE: expected calibration error against the labeler. Other generator: a U-Net pre-trained on the source "
            "domain, scored on the same noisy test inputs. Input sensitivity: AUC of r(true input, output) against "
            "r(another input, same output); 50 = the reward ignores the input. Exploit: evaluator good-rate after 20 "
            f"Adam steps (lr 0.02) on 300 outputs' logits to maximise the reward (start: {100 * float(data.test_ev[:300].mean()):.1f} %).",
            "",
            "| method | ECE | agree other gen. (%) | AUC other gen. (%) | input sensitivity (%) | exploit good-rate (%) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, by_n in results.items():
            rows = by_n.get(probe, [])
            lines.append(
                f"| {name} | {cell([r['ece_lab'] for r in rows], pct=False)} | {cell([r.get('agree_other', float('nan')) for r in rows])} "
                f"| {cell([r.get('auc_other', float('nan')) for r in rows])} | {cell([r['input_sensitivity'] for r in rows])} "
                f"| {cell([r['exploit_good_rate'] for r in rows])} |"
            )
        if data.other_ev is not None:
            lines.append(
                f"\nOther generator's evaluator good-rate: {100 * float(data.other_ev.mean()):.1f} %."
            )
    lines.append("")
    return "\n".join(lines)


def plot(args: Args, results: dict[str, dict[int, list[dict[str, float]]]], data: Data, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, ax, title in (
        ("agree_ev", axes[0], "agreement with evaluator"),
        ("auc_ev", axes[1], "AUC vs evaluator"),
    ):
        for name, by_n in results.items():
            ns = sorted(by_n)
            m = [mean_std([r[key] for r in by_n[n]]) for n in ns]
            ax.errorbar(ns, [v[0] for v in m], yerr=[v[1] for v in m], marker="o", capsize=3, label=name)
        if key == "agree_ev":
            rate = float(data.test_ev.mean())
            ax.axhline(max(rate, 1 - rate), color="grey", ls=":", label="majority class")
            ax.axhline(
                float((data.test_lab == data.test_ev).float().mean()),
                color="black",
                ls="--",
                label="labeler (ceiling)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("labels")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=Args.seeds)
    parser.add_argument(
        "--label-counts", type=lambda s: tuple(int(v) for v in s.split(",")), default=Args.label_counts
    )
    parser.add_argument("--members", type=int, default=Args.members)
    parser.add_argument("--steps", type=int, default=Args.steps)
    parser.add_argument("--methods", type=lambda s: tuple(s.split(",")), default=())
    parser.add_argument("--no-other-generator", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=Args.out)
    parser.add_argument("--threads", type=int, default=Args.threads)
    ns = parser.parse_args(argv)
    args = Args(
        seeds=ns.seeds, label_counts=ns.label_counts, members=ns.members, steps=ns.steps, methods=ns.methods,
        other_generator=not ns.no_other_generator, quick=ns.quick, out=ns.out, threads=ns.threads,
    )  # fmt: skip
    if args.quick:
        args = replace(args, seeds=1, label_counts=(20, 40), members=2, steps=10, pool=120, test=100,
                       other_generator=False, probe_at=40, denoiser_steps=10)  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    seed_everything(0)
    start = time.perf_counter()
    evaluator = Evaluator.from_pretrained()
    data = make_data(args, evaluator)
    cfg = RewardTrainingConfig(steps=args.steps, aux_weight=args.aux_weight)
    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    for name, method in methods(args).items():
        print(f"{name}", flush=True)
        results[name] = {}
        for seed in range(args.seeds):
            for n, row in run_method(
                method, args, data, evaluator, cfg, seed, lambda s: print(s, flush=True)
            ).items():
                results[name].setdefault(n, []).append(row)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = report(args, data, results, seconds)
    out.write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "args": asdict(args),
                "machine": machine_description(),
                "seconds": seconds,
                "results": {k: {str(n): v for n, v in r.items()} for k, r in results.items()},
            },
            indent=2,
        )  # fmt: skip
    )
    plot(args, results, data, out.with_suffix(".png"))
    print(text)
    print(f"wrote {out}, {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return text


if __name__ == "__main__":
    main()
