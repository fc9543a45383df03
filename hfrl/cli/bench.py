"""``hfrl bench``: compare fine-tuning agents on the same task, reward and seeds.

Every agent is trained once per seed against the same reward; the final evaluations go into one table
(evaluator good-rate before/after, target PSNR, source PSNR change, per-image gain, labels, wall time),
written as ``results.csv`` and ``summary.md`` (mean ± std, also printed) with a plot ``compare.png``;
see :func:`hfrl.experiments.compare.compare_agents`. ``--import`` loads a module or file that registers a
user's own agent, which then takes part like a built-in one.
"""

from __future__ import annotations

import argparse
from typing import Any

from hfrl.cli.common import (
    add_device,
    add_import,
    positive_int,
    resolve_checkpoint,
    resolve_checkpoint_settings,
)
from hfrl.errors import ConfigError
from hfrl.plugins import import_user_code

DEFAULT_AGENTS = "reward-grad,rwl,ppo"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl bench``."""
    p = sub.add_parser(
        "bench",
        help="compare fine-tuning agents on the same task, reward and seeds",
        description="Train each agent once per seed with the same reward and task, then print and save a table "
        "(evaluator target good-rate before/after, target PSNR change, source PSNR change, share of improved "
        "images, labels, wall time; mean ± std over seeds) and a plot. Writes results.csv (one row per run), "
        "summary.md, compare.png, config.json and runs/AGENT-seedS/ to --out.",
    )
    p.add_argument(
        "--agents",
        default=DEFAULT_AGENTS,
        metavar="A,B,...",
        help="comma-separated agent names, built-in or registered by --import (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        default="3",
        metavar="N|S,S,...",
        help="a number N (seeds 0..N-1) or a comma-separated list of seeds (default: %(default)s)",
    )
    p.add_argument(
        "--reward",
        required=True,
        metavar="PATH|labeler",
        help="reward-model checkpoint (e.g. the directory of 'hfrl reward train'), or 'labeler' (the oracle "
        "that sees clean images: an upper bound, not learning from feedback)",
    )
    p.add_argument(
        "--labels",
        type=int,
        default=None,
        metavar="N",
        help="labels the reward model was trained on, reported in the table (default: unknown)",
    )
    p.add_argument("--steps", type=positive_int, default=None, help="updates per run (same as --set steps=N)")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="[AGENT.]FIELD=VALUE",
        help="a config field for every agent that has it (e.g. kl=0.01, batch_size=32), or for one agent "
        "(rwl.dataset_size=256); repeatable. Fields are those of 'hfrl finetune --help'",
    )
    add_import(p)
    p.add_argument("--out", default=None, help="output folder (default: runs/bench-TIMESTAMP)")
    add_device(p)
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_seeds(text: str) -> list[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"0,5,7"`` -> ``[0, 5, 7]``.

    Raises:
        ConfigError: for anything else.
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--seeds: expected a number or a comma-separated list of seeds, got {text!r}"
        ) from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise ConfigError(f"--seeds: expected at least 1 seed, got {values[0]}")
        return list(range(values[0]))
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"--seeds: seeds must be integers >= 0, got {text!r}")
    return values


def parse_settings(
    settings: list[str], agents: list[str]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split ``--set`` options into fields for every agent and per-agent fields, typed by the configs.

    Returns:
        ``(base, overrides)`` for :func:`~hfrl.experiments.compare.compare_agents`.

    Raises:
        ConfigError: for a malformed option, an agent not compared, or a field no compared agent has.
    """
    import dataclasses

    from hfrl.agents import agent_class
    from hfrl.fields import read_field

    base: dict[str, Any] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {setting!r}: expected FIELD=VALUE or AGENT.FIELD=VALUE")
        agent, _, field = key.rpartition(".")
        field = field.replace("-", "_")
        if field == "seed":
            raise ConfigError(f"--set {setting!r}: set seeds with --seeds")
        if agent:
            if agent not in agents:
                raise ConfigError(f"--set {setting!r}: agent {agent!r} is not compared ({', '.join(agents)})")
            overrides.setdefault(agent, {})[field] = read_field(agent_class(agent).config_class, field, text)
            continue
        owners = [
            a for a in agents if field in {f.name for f in dataclasses.fields(agent_class(a).config_class)}
        ]
        if not owners:
            raise ConfigError(f"--set {setting!r}: no compared agent has a setting {field!r}")
        base[field] = read_field(agent_class(owners[0]).config_class, field, text)
    return base, overrides


def run(args: argparse.Namespace) -> int:
    """Import user code, build the settings, run the comparison, print where the results are."""
    import torch

    from hfrl.agents import agent_class
    from hfrl.envs.rewards import resolve_reward
    from hfrl.experiments.compare import agent_configs, compare_agents
    from hfrl.runs import make_run_dir

    for spec in args.imports:
        import_user_code(spec)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    if not agents:
        raise ConfigError("--agents: no agent given")
    for agent in agents:
        agent_class(agent)  # unknown names fail here, with the list of known ones
    seeds = parse_seeds(args.seeds)
    if args.labels is not None and args.labels < 0:
        raise ConfigError(f"--labels must be >= 0, got {args.labels}")
    base, overrides = parse_settings(args.settings, agents)
    base = resolve_checkpoint_settings(base)
    overrides = {agent: resolve_checkpoint_settings(values) for agent, values in overrides.items()}
    if args.steps is not None:
        base["steps"] = args.steps
    base.setdefault("device", args.device)
    if args.quiet:
        base["progress"] = False
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for agent in agents:  # bad settings and a missing or corrupt reward fail before --out is created
        agent_configs(agent, agents, seeds, base, overrides)
    if args.reward != "labeler":
        args.reward = str(resolve_checkpoint(args.reward, "reward"))
        resolve_reward(args.reward)
    out = make_run_dir(args.out, "bench")
    compare_agents(
        agents,
        reward=args.reward,
        seeds=seeds,
        base=base,
        overrides=overrides,
        out=out,
        labels_used=args.labels,
    )
    print(f"results: {out / 'results.csv'}, {out / 'summary.md'}, {out / 'compare.png'}")
    return 0
