"""Compare fine-tuning agents on the same task, the same reward and the same seeds.

:func:`compare_agents` trains every agent once per seed, with one reward per seed shared by every agent
of that seed (the same labels), and collects each run's final evaluation by the independent evaluator
into one table: good-rate before and after, target PSNR, source PSNR change (retention), the seed paper's
per-image PSNR gain, labels and wall time. It writes, under ``out``:

* ``results.csv``: one row per (agent, seed), rewritten after every run (an interrupted comparison keeps
  what it finished);
* ``summary.md``: mean ± std over seeds per agent, as a Markdown table (also returned by
  :func:`summary_markdown`);
* ``compare.png``: good-rate after fine-tuning (mean ± std) beside the source PSNR change;
* ``config.json``: agents, seeds, settings and the machine; ``runs/AGENT-seedS/``: each run's directory.

Any registered agent takes part, a user's own included (:func:`hfrl.agents.register_agent`)::

    from hfrl.experiments.compare import compare_agents

    df = compare_agents(["reward-grad", "rwl", "mine"], reward="runs/reward/model", seeds=(0, 1, 2),
                        base={"steps": 200, "device": "cpu"}, overrides={"rwl": {"dataset_size": 256}},
                        out="runs/bench", labels_used=200)

The reward is the same for every agent of a seed. A reward *factory* ``seed -> reward`` gives each seed
its own reward model (for instance one trained on labels collected for that seed); it is called once per
seed, before that seed's runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from hfrl.agents.base import NonFiniteLossError
from hfrl.agents.config import TrainerConfig, with_images
from hfrl.agents.registry import agent_class
from hfrl.data import data_record
from hfrl.device import machine_description
from hfrl.envs.rewards import RewardSpec, resolve_reward
from hfrl.errors import ConfigError, HfrlError
from hfrl.names import DATA_FIELDS
from hfrl.runs import write_json
from hfrl.tasks import TASK_FIELDS as TASK_SETTINGS

RewardFactory = Callable[[int], RewardSpec]
"""``seed -> reward``: a reward-model checkpoint path, ``"labeler"``, an ``nn.Module`` or a callable."""
RewardSource = str | os.PathLike | nn.Module | RewardFactory
"""What :func:`compare_agents` accepts as its ``reward``."""

RESULT_COLUMNS = (
    "agent",
    "seed",
    "status",
    "steps",
    "reward",
    "reward_labels",
    "agent_labels",
    "labels",
    "target_good_rate_before",
    "target_good_rate_after",
    "target_good_rate_change",
    "target_psnr_before",
    "target_psnr_after",
    "target_psnr_change",
    "source_good_rate_after",
    "source_psnr_after",
    "source_psnr_change",
    "target_psnr_gain_mean",
    "target_psnr_gain_std",
    "target_psnr_gain_max",
    "target_psnr_gain_share_improved",
    "seconds",
    "wall_seconds",
    "run_dir",
    "error",
)
"""Columns of ``results.csv``. ``labels`` = ``reward_labels`` (labels behind the reward model, for agents
that use one; empty for the ``labeler`` oracle) + ``agent_labels`` (labels the agent asked for itself,
e.g. DPO's pairs). ``seconds``: the training loop; ``wall_seconds``: the whole run, set-up and final
evaluation included. ``status``: ``ok`` or ``diverged`` (a NaN or inf loss; ``error`` says where)."""

SUMMARY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("target_good_rate_before", "good-rate before", "pct"),
    ("target_good_rate_after", "good-rate after", "pct"),
    ("target_psnr_change", "target PSNR Δ (dB)", "db"),
    ("source_psnr_change", "source PSNR Δ (dB)", "db"),
    ("target_psnr_gain_share_improved", "images improved", "pct"),
    ("labels", "labels", "int"),
    ("wall_seconds", "wall time (s)", "sec"),
)
"""``(column, header, format)`` of the summary table, in order."""


TASK_FIELDS = ("task", *TASK_SETTINGS, *(f for f in DATA_FIELDS if f not in TASK_SETTINGS), "max_value")
"""Config fields that define the task (data, noise, starting generator): the same for every agent, so
``base`` may set them and per-agent ``overrides`` may not."""


def compare_agents(
    agents: Sequence[str],
    *,
    reward: RewardSource,
    seeds: Sequence[int] = (0, 1, 2),
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | os.PathLike,
    labels_used: int | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train every agent on every seed with the same task and reward; tabulate, save and plot the results.

    Runs go seed by seed (every agent on seed 0, then on seed 1, ...), so a setting an agent rejects shows
    up within the first round. Every configuration is checked before the first run.

    Args:
        agents: Registered agent names (built-in or added with :func:`hfrl.agents.register_agent`).
        reward: A reward-model checkpoint path, ``"labeler"`` (the oracle: an upper bound, not learning
            from feedback), an ``nn.Module`` reward model shared by every run, or a factory ``seed ->
            reward`` (any of those, or a callable ``(noisy, output) -> (B,)``) called once per seed — the
            place for "collect N labels for this seed and train a reward model on them". Every other
            callable counts as a factory: pass a fixed reward function as ``lambda seed: fn``.
        seeds: Seeds; each run's config gets ``seed=s`` (environment, samples, auxiliary batches).
        base: Config fields for every agent (``steps``, ``batch_size``, ``kl``, ``device``, ...; typed
            values). A field that only some agents have (rwl's ``dataset_size``) goes to those; a field
            no agent has is an error. ``seed`` is set from ``seeds``. ``dataset`` (or ``source_data`` and
            ``target_data``) may hold your own images in any form a config takes; they are read once, and
            ``config.json`` records them by name, shape and SHA-256.
        overrides: Per-agent fields ``{agent: {field: value}}``, applied after ``base`` (e.g. a learning
            rate that suits one agent).
        out: Output folder (created).
        labels_used: Labels behind the reward model(s), reported in the ``labels`` column (``None``:
            unknown, e.g. the ``labeler`` oracle).
        verbose: Print one line per run and the summary table.

    Returns:
        One row per (agent, seed) with :data:`RESULT_COLUMNS` (also written to ``results.csv``).

    Raises:
        ConfigError: for an unknown agent or field, a missing reward file, a setting an agent rejects.
    """
    agents = list(agents)
    seeds = [int(s) for s in seeds]
    if not agents:
        raise ConfigError("no agents to compare")
    if not seeds:
        raise ConfigError("no seeds")
    if len(set(agents)) != len(agents):
        raise ConfigError(f"an agent is listed twice: {', '.join(agents)}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"a seed is listed twice: {seeds}")
    if labels_used is not None and int(labels_used) < 0:
        raise ConfigError(f"labels_used must be >= 0, got {labels_used}")
    base = with_images(base or {})  # the user's images, read and converted once for every run
    configs = {agent: agent_configs(agent, agents, seeds, base, overrides) for agent in agents}
    factory = _reward_factory(reward)

    out = Path(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    write_json(
        out / "config.json",
        {
            "agents": agents,
            "seeds": seeds,
            "base": {k: data_record(v) for k, v in base.items()},  # user images as their record
            "overrides": {k: dict(v) for k, v in (overrides or {}).items()},
            "reward": describe_reward(reward),
            "labels_used": labels_used,
            "machine": machine_description(),
        },
    )
    rows: list[dict[str, Any]] = []
    total, done = len(agents) * len(seeds), 0
    for seed in seeds:
        seed_reward = factory(seed)
        for agent in agents:
            done += 1
            row = run_one(
                agent, configs[agent][seed], seed_reward, out / "runs" / f"{agent}-seed{seed}", labels_used
            )
            rows.append(row)
            results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
            results.to_csv(out / "results.csv", index=False)
            if verbose:
                print(f"[{done}/{total}] {format_run(row)}", flush=True)
    table = summary_markdown(results)
    (out / "summary.md").write_text(table)
    plot_comparison(results, out / "compare.png")
    if verbose:
        print(table, end="")
    return results


def agent_configs(
    agent: str,
    agents: Sequence[str],
    seeds: Sequence[int],
    base: Mapping[str, Any] | None,
    overrides: Mapping[str, Mapping[str, Any]] | None,
) -> dict[int, TrainerConfig]:
    """The validated config of ``agent`` for each seed: ``base`` (its fields), then its overrides.

    Args:
        agent: The agent.
        agents: Every agent of the comparison (a ``base`` field must belong to at least one of them).
        seeds: The seeds.
        base: Fields for every agent.
        overrides: ``{agent: {field: value}}``.

    Raises:
        ConfigError: for an unknown agent, a field no agent has, overrides for an agent not compared.
    """
    base, overrides = dict(base or {}), dict(overrides or {})
    if "seed" in base or any("seed" in v for v in overrides.values()):
        raise ConfigError("set seeds with seeds=..., not as a config field")
    if "reward" in base or any("reward" in v for v in overrides.values()):
        raise ConfigError("pass the reward as reward=..., not as a config field: every agent gets the same")
    for name, values in overrides.items():
        task = sorted(set(values) & set(TASK_FIELDS))
        if task:
            raise ConfigError(
                f"overrides for {name} change the task ({', '.join(task)}); set it in base, for every agent"
            )
    strays = sorted(set(overrides) - set(agents))
    if strays:
        raise ConfigError(f"overrides for agent(s) not compared: {', '.join(strays)}")
    fields = {name: {f.name for f in dataclasses.fields(agent_class(name).config_class)} for name in agents}
    unknown = sorted(k for k in base if not any(k in f for f in fields.values()))
    if unknown:
        raise ConfigError(f"no compared agent has the setting(s) {', '.join(unknown)}")
    cls = agent_class(agent).config_class
    values = {k: v for k, v in base.items() if k in fields[agent]}
    values.update(overrides.get(agent, {}))
    try:
        return {seed: cls.from_dict({**values, "seed": seed}) for seed in seeds}
    except (TypeError, ValueError) as exc:  # ConfigError, or a wrong type the config's checks trip over
        raise ConfigError(f"{agent}: {exc}") from None


def run_one(
    agent: str, config: TrainerConfig, reward: RewardSpec, run_dir: Path, labels_used: int | None
) -> dict[str, Any]:
    """Train one agent on one seed and turn its final evaluation into a results row.

    A path or ``"labeler"`` reward goes into the config (so the run's ``config.json`` names it); any
    other reward object is passed to the trainer. A NaN or inf loss gives a ``diverged`` row.

    Args:
        agent: Registered agent name.
        config: Its validated config (``seed`` set).
        reward: This seed's reward (anything the trainers accept).
        run_dir: The run's directory.
        labels_used: Labels behind the reward (``None``: unknown).

    Returns:
        A dict with the keys of :data:`RESULT_COLUMNS` that apply (a diverged run has no metrics).

    Raises:
        HfrlError: for bad input the trainer rejects, its message prefixed with the agent's name.
    """
    cls = agent_class(agent)
    kwargs: dict[str, Any] = {"run_dir": run_dir}
    if isinstance(reward, (str, os.PathLike)):
        config = config.replace(reward=str(reward))
    else:
        kwargs["reward"] = reward
    reward_labels = labels_used if cls.needs_reward else 0
    row: dict[str, Any] = {
        "agent": agent,
        "seed": config.seed,
        "reward": describe_reward(reward),
        "reward_labels": reward_labels,
        "run_dir": str(run_dir),
    }
    start = time.perf_counter()
    try:
        result = cls(config, **kwargs).train()
    except NonFiniteLossError as exc:
        row.update(status="diverged", error=str(exc), wall_seconds=time.perf_counter() - start)
        return row
    except HfrlError as exc:  # bad input (a setting this agent rejects, an unusable reward): stop here
        message = str(exc)
        raise type(exc)(message if message.startswith(agent) else f"{agent}: {message}") from None
    wall = time.perf_counter() - start
    final = result.final
    domain_all = {r["domain"]: r for r in final.get("per_class", []) if r.get("class") == "all"}
    gain = final["target_psnr_gain"]
    row.update(
        status="ok",
        steps=result.steps,
        agent_labels=final["labels_used"],
        labels=(reward_labels if reward_labels is not None else math.nan) + final["labels_used"],
        target_good_rate_before=final["target_good_rate_before"],
        target_good_rate_after=final["target_good_rate_after"],
        target_good_rate_change=final["target_good_rate_after"] - final["target_good_rate_before"],
        target_psnr_after=domain_all["target"]["psnr"],
        target_psnr_before=domain_all["target"]["psnr"] - final["target_psnr_change"],
        target_psnr_change=final["target_psnr_change"],
        source_good_rate_after=final["source_good_rate_after"],
        source_psnr_after=domain_all["source"]["psnr"],
        source_psnr_change=final["source_psnr_change"],
        target_psnr_gain_mean=gain["mean"],
        target_psnr_gain_std=gain["std"],
        target_psnr_gain_max=gain["max"],
        target_psnr_gain_share_improved=gain["share_improved"],
        seconds=final["seconds"],
        wall_seconds=wall,
    )
    return row


# ---------------------------------------------------------------------------------------------------------
# Rewards


def _reward_factory(reward: RewardSource) -> RewardFactory:
    """A ``seed -> reward`` function for any accepted ``reward``; a fixed path is checked once, up front."""
    if isinstance(reward, nn.Module):
        return lambda seed: reward
    if isinstance(reward, (str, os.PathLike)):
        if str(reward) != "labeler":
            resolve_reward(reward)  # a missing or corrupt checkpoint fails before the first run
        return lambda seed: reward
    if callable(reward):
        return reward
    raise ConfigError(
        f"reward must be a checkpoint path, 'labeler', an nn.Module or a function seed -> reward, "
        f"got {type(reward).__name__}"
    )


def describe_reward(reward: Any) -> str:
    """A short description of a reward for tables and ``config.json``."""
    if isinstance(reward, (str, os.PathLike)):
        return str(reward)
    if isinstance(reward, nn.Module):
        return type(reward).__name__
    return getattr(reward, "__qualname__", None) or type(reward).__name__


# ---------------------------------------------------------------------------------------------------------
# Tables and the plot


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per agent (finished runs only), agents in their order.

    Returns:
        One row per agent: ``runs``, ``diverged`` and ``COLUMN_mean`` / ``COLUMN_std`` for every summary
        metric (std is the sample standard deviation; NaN for a single seed).
    """
    order = list(dict.fromkeys(results["agent"]))
    rows = []
    for agent in order:
        runs = results[results["agent"] == agent]
        ok = runs[runs["status"] == "ok"]
        row: dict[str, Any] = {
            "agent": agent,
            "runs": len(ok),
            "diverged": int((runs["status"] != "ok").sum()),
        }
        for column, _, _ in SUMMARY_METRICS:
            values = pd.to_numeric(ok[column], errors="coerce").dropna()
            row[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{column}_std"] = float(values.std()) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def summary_markdown(results: pd.DataFrame) -> str:
    """The summary as a Markdown table: mean ± std over seeds per agent.

    Good-rates and the share of improved images are percentages; PSNR changes are in dB (source PSNR
    change is retention: negative means the source skill was partly forgotten).
    """
    summary = summarize(results)
    header = ["agent", "seeds"] + [h for _, h, _ in SUMMARY_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
    for _, row in summary.iterrows():
        seeds = f"{row['runs']}" + (f" ({row['diverged']} diverged)" if row["diverged"] else "")
        cells = [str(row["agent"]), seeds]
        for column, _, kind in SUMMARY_METRICS:
            cells.append(_cell(row[f"{column}_mean"], row[f"{column}_std"], kind))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float, std: float, kind: str) -> str:
    if not math.isfinite(mean):
        return "–"
    if kind == "pct":
        text, spread = f"{100 * mean:.1f}", f"{100 * std:.1f}"
    elif kind == "db":
        text, spread = f"{mean:+.2f}", f"{std:.2f}"
    elif kind == "int":  # labels: the same for every seed, as a rule
        text, spread = f"{mean:.0f}", f"{std:.0f}" if std > 0 else ""
    else:
        text, spread = f"{mean:.1f}", f"{std:.1f}"
    return f"{text} ± {spread}" if math.isfinite(std) and spread else text


def format_run(row: Mapping[str, Any]) -> str:
    """One line about a finished run."""
    head = f"{row['agent']} seed {row['seed']}"
    if row.get("status") != "ok":
        return f"{head}: {row.get('status')} ({row.get('error')})"
    return (
        f"{head}: target good-rate {row['target_good_rate_before']:.1%} -> {row['target_good_rate_after']:.1%}, "
        f"target PSNR {row['target_psnr_change']:+.2f} dB, source PSNR {row['source_psnr_change']:+.2f} dB, "
        f"{row['wall_seconds']:.1f} s"
    )


def plot_comparison(results: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Plot the comparison as a PNG: good-rate after fine-tuning, and good-rate against retention.

    Left: the evaluator's target good-rate after fine-tuning per agent (bars, mean ± std over seeds; dashed:
    before). Right: the same against the source PSNR change (retention), one point per agent.

    Args:
        results: Rows as :func:`compare_agents` returns them.
        path: The PNG to write.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display needed

    summary = summarize(results)
    summary = summary[summary["runs"] > 0]
    names = list(summary["agent"])
    mean = 100 * summary["target_good_rate_after_mean"].to_numpy()
    std = 100 * summary["target_good_rate_after_std"].fillna(0).to_numpy()
    before = 100 * summary["target_good_rate_before_mean"].mean() if len(summary) else math.nan
    fig = Figure(figsize=(10, 4), dpi=100)
    left, right = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(names))]
    left.bar(range(len(names)), mean, yerr=std, capsize=4, color=colors)
    if math.isfinite(before):
        left.axhline(before, color="k", linestyle="--", linewidth=1, label=f"before ({before:.1f} %)")
        left.legend(loc="lower right")
    left.set_xticks(range(len(names)), names, rotation=20, ha="right")
    left.set_ylabel("evaluator good-rate, target test (%)")
    left.set_ylim(0, 100)
    left.set_title("target good-rate after fine-tuning")
    x = summary["source_psnr_change_mean"].to_numpy()
    xerr = summary["source_psnr_change_std"].fillna(0).to_numpy()
    for i, name in enumerate(names):
        right.errorbar(
            x[i], mean[i], xerr=xerr[i], yerr=std[i], fmt="o", color=colors[i], capsize=3, label=name
        )
    if math.isfinite(before):
        right.axhline(before, color="k", linestyle="--", linewidth=1)
    right.axvline(0.0, color="grey", linewidth=0.8)
    right.set_xlabel("source PSNR change (dB; < 0: forgetting)")
    right.set_ylabel("evaluator good-rate, target test (%)")
    right.set_title("gain vs. retention")
    if names:
        right.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


__all__ = [
    "RESULT_COLUMNS",
    "RewardFactory",
    "RewardSource",
    "agent_configs",
    "compare_agents",
    "describe_reward",
    "format_run",
    "plot_comparison",
    "run_one",
    "summarize",
    "summary_markdown",
]
