"""The demo pipeline: the seed paper's pipeline end to end on the embedded digits, with an HTML report.

:func:`run_demo` runs it; ``hfrl demo`` parses its flags into a :class:`~hfrl.runconfig.DemoConfig` and
calls it.

Stages, each shown as it runs and timed:

1. ``setup``: load the shipped source generator (trained on noisy '0's); its outputs on noisy
   target-domain digits (1-9) form the pool that labels are asked about.
2. ``denoiser``: the label-free estimate of the clean inputs that the similarity reward compares outputs
   with: a Noise2Self denoiser trained on those noisy images, or (``reward_reference = "classical"``, the
   default task's choice) a classical denoiser tuned on the source domain's noisy/clean pairs.
3. ``labels``: N labels in rounds through the feedback queue — the first round at random, later ones
   where a small reward ensemble disagrees most — answered by the synthetic labeler through the same
   store functions as the labelling page, or with ``--human`` by a person on that page.
4. ``reward``: the reward model fitted to the labels in the store.
5. ``finetune``: the default agent (reward-grad) with the auxiliary and consistency losses.
6. ``evaluate``: the independent evaluator on the test split, before and after.
7. ``baselines``: what the user could get without feedback, on the same test inputs: a classical
   denoiser tuned on the source pairs and the stage-2 self-supervised denoiser used as generators (the
   best of them and the source generator is the "best label-free" row), and the task's supervised bound.
8. ``report``: ``report.html`` with ``metrics.json`` and the figures, in the run directory.

One TOML file describes a run (:class:`hfrl.runconfig.DemoConfig`; every flag is one of its fields); the
run directory keeps the resolved one as ``config.toml`` and ``hfrl demo --config RUN/config.toml`` runs
it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hfrl.errors import ConfigError
from hfrl.runconfig import DemoConfig, dump_config
from hfrl.tasks import get_task

STAGES: tuple[tuple[str, str], ...] = (
    ("setup", "load the source generator; its outputs on noisy target-domain digits"),
    ("denoiser", "label-free estimate behind the similarity reward (Noise2Self or classical)"),
    ("labels", "collect labels through the feedback queue"),
    ("reward", "fit the reward model to the labels in the store"),
    ("finetune", "fine-tune the generator against the reward"),
    ("evaluate", "evaluate before and after on the test split"),
    ("baselines", "label-free baselines and the supervised bound on the same test inputs"),
    ("report", "write the HTML report"),
)
"""``(name, what it does)`` of every stage, in order."""
TICKING = ("setup", "denoiser", "reward", "evaluate", "baselines", "report")
"""Stages without a progress bar of their own: a live elapsed-time line stands in (on a terminal)."""
RUN_FILES = (
    "config.toml",
    "report.html",
    "metrics.json",
    "feedback.sqlite",
    "feedback.sqlite-wal",
    "feedback.sqlite-shm",
    "reward",
    "finetune",
    "figures",
)
"""What a demo writes into its run directory (and removes there before running again)."""


# ------------------------------------------------------------------------------------------ stages


class StageDisplay:
    """Numbered stage lines, live elapsed time for stages without a bar, and the time each stage took.

    Args:
        stages: ``(name, description)`` of every stage, in order.
        live: Show a live elapsed-time line in stages without a bar of their own (on a terminal only).
        stream: Where to print (default ``sys.stdout``).
    """

    def __init__(self, stages: Sequence[tuple[str, str]], live: bool = True, stream: TextIO | None = None):
        self.stages = list(stages)
        self.live = live
        self.stream = stream or sys.stdout
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def skip(self, name: str, why: str) -> None:
        """Announce a stage that does not run."""
        k = [n for n, _ in self.stages].index(name) + 1
        self._print(f"[{k}/{len(self.stages)}] {name}: skipped ({why})")

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Run one stage inside the ``with`` block."""
        names = [n for n, _ in self.stages]
        k = names.index(name) + 1
        self._print(f"[{k}/{len(self.stages)}] {name}: {self.stages[k - 1][1]}")
        start, cpu = time.perf_counter(), time.process_time()
        stop = threading.Event()
        ticker = None
        if self.live and name in TICKING and self.stream.isatty():

            def tick() -> None:
                while not stop.wait(0.5):
                    self.stream.write(f"\r      {name}: {time.perf_counter() - start:5.0f} s")
                    self.stream.flush()

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        try:
            yield
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
                self.stream.write("\r\033[K")
            self.seconds[name] = time.perf_counter() - start
            self.cpu_seconds[name] = time.process_time() - cpu
        self._print(f"      {name} done in {self.seconds[name]:.1f} s (CPU {self.cpu_seconds[name]:.1f} s)")


# ------------------------------------------------------------------------------------------ the run


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        run_dir: The run directory.
        report: ``report.html``.
        config: The resolved configuration (as saved in ``config.toml``).
        final: The trainer's final evaluation (``evaluation.json``).
        metrics: :func:`hfrl.report.run_metrics` of before and after.
        seconds: Seconds per stage.
    """

    run_dir: Path
    report: Path
    config: DemoConfig
    final: dict[str, Any]
    metrics: dict[str, Any]
    seconds: dict[str, float]


def prepare_run_dir(out: str | None) -> Path:
    """The run directory: a new ``runs/demo-TIMESTAMP``, or ``out`` with an earlier demo's results removed.

    Only the names in :data:`RUN_FILES` are removed; other files in ``out`` stay.

    Raises:
        ConfigError: when ``out`` is a file, or holds files of those names but no earlier demo run (so they
            are someone else's).
    """
    from hfrl.runs import make_run_dir

    if out is None:
        return make_run_dir(None, "demo")
    path = Path(out)
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"out {path} is a file, not a run directory")
        clash = sorted(name for name in RUN_FILES if (path / name).exists())
        if clash and not (path / "config.toml").is_file():
            raise ConfigError(
                f"out {path} holds {', '.join(clash)} but no earlier demo run; choose another --out"
            )
        for name in RUN_FILES:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    return make_run_dir(path, "demo")


def _settings_rows(config: DemoConfig) -> list[dict[str, Any]]:
    section_of = {n: s for s, names in DemoConfig.SECTIONS.items() for n in names}
    rows = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            value = ", ".join(map(str, value))
        rows.append(
            {
                "setting": f"{section_of.get(f.name, 'run')}.{f.name}",
                "value": "–" if value is None else str(value),
            }
        )
    return rows


def _story(config: DemoConfig) -> str:
    """The report's opening paragraph: what the source generator is and what the run did."""
    task = get_task(config.task)
    own = config.generator is not None and Path(config.generator) != task.generator_path()
    source = (
        f"The source generator ({config.generator}) was trained on classes {list(config.source_classes)}"
        if own
        else f"Task {task.name}: {task.description}. The shipped source generator was trained on noisy "
        f"images of classes {list(config.source_classes)} only"
    )
    return (
        f"{source}; here it denoises classes {list(config.target_classes)} under {config.noise} noise "
        f"(level {config.noise_level:g}). Labels on its outputs train a reward model; the generator is then "
        "fine-tuned to maximise that reward while an auxiliary loss keeps its source-domain skill. No clean "
        "target image reaches the reward model or the fine-tuning."
    )


def run_demo(config: DemoConfig, *, announce: Any = print) -> DemoResult:
    """Run every stage and write the report.

    Args:
        config: The run's configuration (``config.out`` may be ``None``: a new run directory is made).
        announce: Where messages go (stage lines and the summary use ``sys.stdout``).

    Returns:
        A :class:`DemoResult`.

    Raises:
        ConfigError: for bad settings (e.g. an unknown agent).
        FeedbackTimeoutError: when people do not label in time (``human``).
    """
    import torch

    from hfrl.agents import agent_class, make_config, make_trainer
    from hfrl.baselines import reference_evaluations
    from hfrl.device import seed_everything
    from hfrl.experiments.reward import prepare_reward
    from hfrl.report import RunSummary, run_metrics, save_report_figures, write_report

    agent_class(config.agent)  # an unknown agent fails before any work
    run_dir = prepare_run_dir(config.out)
    config = dataclasses.replace(config, out=str(run_dir))
    dump_config(
        config,
        run_dir / "config.toml",
        header=f"hfrl demo: resolved configuration of the run in {run_dir}\n"
        f"run it again with:  hfrl demo --config {run_dir / 'config.toml'}",
    )
    if config.threads:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    stages = StageDisplay(STAGES, live=config.progress)
    announce(f"hfrl demo: run directory {run_dir}")
    if config.labels == 0:
        stages.skip("labels", "0 labels: the label-free similarity reward")

    reward_path, info = prepare_reward(
        run_dir,
        n_labels=config.labels,
        seed=config.seed,
        selection=config.selection,
        rounds=config.rounds,
        generator=config.generator,
        human=config.human,
        task=config.task,
        dataset=config.dataset,
        data_dir=config.data_dir,
        source_classes=config.source_classes,
        target_classes=config.target_classes,
        noise=config.noise,
        noise_level=config.noise_level,
        pool=config.pool,
        candidates=config.candidates,
        ensemble=config.ensemble,
        reward_members=config.reward_members,
        reference=str(config.reward_reference),
        denoiser_steps=config.denoiser_steps,
        denoiser_radius=int(config.denoiser_radius or 0),
        denoiser_stride=int(config.denoiser_stride or 1),
        reward_steps=config.reward_steps,
        reward_lr=config.reward_lr,
        monotone=config.monotone,
        flip_rate=config.flip_rate,
        labeler=config.labeler,
        evaluator=config.evaluator,
        host=config.host,
        port=config.port,
        open_browser=config.open_browser,
        timeout=config.human_timeout,
        device=config.device,
        progress=config.progress,
        stage=stages,
        announce=announce,
    )

    with stages("finetune"):
        trainer_config = make_config(
            config.agent,
            steps=config.finetune_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            kl=config.kl,
            aux=config.aux,
            consistency=config.consistency,
            task=config.task,
            generator=config.generator,
            dataset=config.dataset,
            data_dir=config.data_dir,
            source_classes=config.source_classes,
            target_classes=config.target_classes,
            noise=config.noise,
            noise_level=config.noise_level,
            evaluator=config.evaluator,
            seed=config.seed,
            device=config.device,
            eval_every=config.eval_every,
            eval_size=config.eval_size,
            checkpoint_every=0,
            progress=config.progress,
        )
        trainer = make_trainer(config.agent, trainer_config, reward=info.model, run_dir=run_dir / "finetune")
        history: list[dict[str, float]] = []
        if config.eval_every:
            history.append({"step": 0.0, **trainer.validate()})  # the curves start where the generator did
        result = trainer.train()
        history += [{"step": float(i + 1), **row} for i, row in enumerate(result.history)]

    with stages("evaluate"):
        before = trainer.initial_evaluation()
        after = result.evaluation  # Trainer.finish evaluated the fine-tuned generator on the test split
        assert after is not None
        metrics = run_metrics(before, after)

    with stages("baselines"):
        task = get_task(config.task)
        same_task = all(getattr(config, k) == getattr(task, k) for k in ("dataset", "noise", "noise_level"))
        same_task = same_task and tuple(config.target_classes) == tuple(task.target_classes)
        references = reference_evaluations(
            before,
            trainer.domains,
            trainer.noise,
            trainer.evaluator,
            task=task if same_task else None,
            # a classical estimate is the classical row already
            denoiser=getattr(info.model, "denoiser", None) if config.reward_reference == "n2s" else None,
            denoiser_name=f"self-supervised denoiser (stage 2, {info.denoiser.get('variant', 'n2s')})",
            seed=config.seed,
        )
        feedback_name = f"feedback: {config.agent}, {config.labels} labels"
        four = references.four_rows(feedback_name, after)

    with stages("report"):
        labels = info.labels
        asked = labels.asked if labels is not None else None
        summary = RunSummary(
            title=f"hfrl demo: {config.labels} {'human' if config.human else 'synthetic'} labels, "
            f"{config.agent}, seed {config.seed}",
            before=before,
            after=after,
            history=history,
            stages={},  # filled below, once the report stage's own time is known
            settings=_settings_rows(config),
            labels=labels.to_dict() if labels is not None else None,
            label_outputs=info.pool.outputs[asked] if asked is not None else None,
            label_values=labels.answers if labels is not None else None,
            reward=info.to_dict(),
            notes=[_story(config)],
            references=four,
            references_note="Best label-free = the best by target good-rate of the source generator, a "
            "classical denoiser tuned on the source pairs and the self-supervised denoiser this run trained "
            "(no labels). scripts/bench_bounds.py measures every label-free baseline, trained longer; the "
            "README lists them per task."
            + ("" if references.supervised is not None else " No supervised bound is shipped for this task."),
            files=[
                (
                    "config.toml",
                    "config.toml: this run's settings (hfrl demo --config config.toml reruns it)",
                ),
                ("finetune/evaluation.json", "finetune/evaluation.json: the trainer's final evaluation"),
                ("finetune/train.csv", "finetune/train.csv: metrics per update"),
                ("finetune/generator.safetensors", "finetune/generator: the fine-tuned generator"),
                ("reward/model.json", "reward/model: the reward model (config; weights beside it)"),
            ]
            + ([("feedback.sqlite", "feedback.sqlite: the feedback store")] if info.db is not None else []),
            extra={"config": dataclasses.asdict(config), "final": result.final},
            # a term at weight 0 is logged but not optimised: its curve would only crowd the others
            skip_curves=tuple(f"losses/{k}" for k in ("kl", "aux", "consistency") if getattr(config, k) == 0),
        )
        figures = save_report_figures(run_dir, summary)
    # the page shows every stage's time, the report's own included: rendered once that is known (cheap)
    summary.stages, summary.stages_cpu = dict(stages.seconds), dict(stages.cpu_seconds)
    report = write_report(run_dir, summary, figures)

    total = sum(stages.seconds.values())
    m = metrics
    gain = m["target_psnr_gain"]
    width = max(len(name) for name in four)
    announce("target good-rate on the test split (independent evaluator, the same inputs for every row):")
    for name, ev in four.items():
        t, src = ev.target.summary(), ev.source.summary()
        announce(
            f"  {name:<{width}}  {t['good_rate']:6.1%}  target PSNR {t['psnr']:5.2f} dB  source PSNR {src['psnr']:5.2f} dB"
        )
    announce(
        f"target good-rate {m['target']['good_rate']['before']:.1%} -> {m['target']['good_rate']['after']:.1%}, "
        f"source PSNR change {m['source_retention']:+.2f} dB, per-image target PSNR gain "
        f"{gain['mean']:+.2f} ± {gain['std']:.2f} dB ({gain['share_improved']:.0%} of images improved)"
    )
    cpu = sum(stages.cpu_seconds.values())
    announce(
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.seconds.items())
        + f"; total {total:.0f} s (CPU {cpu:.0f} s)"
    )  # fmt: skip
    announce(f"reward model: {reward_path}")
    announce(f"report: {report}")
    return DemoResult(run_dir, report, config, result.final, metrics, dict(stages.seconds))


__all__ = [
    "RUN_FILES",
    "STAGES",
    "DemoResult",
    "StageDisplay",
    "prepare_run_dir",
    "run_demo",
]
