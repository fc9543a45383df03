"""``hfrl finetune``: fine-tune the generator with one of the agents."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any

from hfrl.cli.common import add_import, add_user_data, existing_path, resolve_config_checkpoints
from hfrl.errors import ConfigError
from hfrl.plugins import import_user_code
from hfrl.runs import read_json_object

AGENT_NAMES = (
    "reinforce",
    "ppo",
    "rwl",
    "reward-grad",
    "dpo",
    "sb3-ppo",
    "sb3-a2c",
    "sb3-sac",
    "sb3-td3",
    "n2s",
    "n2s-finetune",
)
"""The built-in agents, the label-free baselines ``n2s`` and ``n2s-finetune`` among them (``--import`` may
register more)."""
SKIP_FIELDS = {"progress"}


def _agents() -> dict[str, Any]:
    import hfrl.agents as agents

    return agents.AGENTS


def _config_classes() -> dict[str, type]:
    """The config class of every agent: the built-in ones, then any registered in this process.

    The built-in ones come from :data:`hfrl.agents.config.BUILTIN_CONFIGS`, which imports no torch (the
    trainers are only imported when an agent runs), so ``--help`` answers at once.
    """
    from hfrl.agents.config import BUILTIN_CONFIGS
    from hfrl.agents.registry import AGENTS

    configs: dict[str, type] = dict(BUILTIN_CONFIGS)
    configs.update((name, cls.config_class) for name, cls in AGENTS.items())
    return configs


def _all_fields() -> dict[str, tuple[type, str, Any]]:
    """Every config field of every agent: ``name -> (config class, help, default)``."""
    from hfrl.agents.config import field_docs

    fields: dict[str, tuple[type, str, Any]] = {}
    for config_class in _config_classes().values():
        docs = field_docs(config_class)
        for f in dataclasses.fields(config_class):
            if f.name not in fields and f.name not in SKIP_FIELDS:
                fields[f.name] = (config_class, docs.get(f.name, ""), f.default)
    return fields


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per agent config field; unset options stay out of the namespace."""
    group = parser.add_argument_group(
        "agent settings (each maps to a config field; defaults depend on the agent)"
    )
    for name, (_, doc, _default) in sorted(_all_fields().items()):
        flag = "--" + name.replace("_", "-")
        group.add_argument(
            flag, dest=f"cfg_{name}", default=argparse.SUPPRESS, metavar="VALUE", help=doc.replace("%", "%%")
        )


def config_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The ``--field VALUE`` and ``--set FIELD=VALUE`` options the user gave, as raw strings.

    Raises:
        ConfigError: for a ``--set`` option that is not ``FIELD=VALUE``.
    """
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}
    for item in getattr(args, "settings", []):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set takes FIELD=VALUE, got {item!r}")
        overrides[name.strip().replace("-", "_")] = value
    return overrides


def build_config(agent: str, overrides: dict[str, Any], base: dict[str, Any] | None = None) -> Any:
    """The agent's config from a base dict (a config file) and textual overrides."""
    from hfrl.agents import agent_class
    from hfrl.fields import read_field

    cls = agent_class(agent).config_class
    values = dict(base or {})
    for name, text in overrides.items():
        values[name] = read_field(cls, name, text) if isinstance(text, str) else text
    return cls.from_dict(values)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl finetune``."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune the generator from a reward model (or preferences) with an RL agent",
        description="Fine-tune a generator on the target domain, optimising reward - kl*KL - aux*L_aux - "
        "consistency*L_cons. Writes a run directory: config.json, train.csv/eval.csv, TensorBoard logs, a "
        "resumable state checkpoint, the fine-tuned generator, image grids and evaluation.json.",
    )
    p.add_argument(
        "--agent",
        default="reward-grad",
        metavar="NAME",
        help=f"the agent: {', '.join(AGENT_NAMES)}, or one registered by --import (default: %(default)s)",
    )
    p.add_argument(
        "--resume",
        type=existing_path,
        default=None,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/finetune-AGENT-TIMESTAMP)")
    add_user_data(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_import(p)
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any config field of the agent by name, including those of an agent registered by --import "
        "(repeatable)",
    )
    add_config_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the trainer (or restore it), train, print the final evaluation."""
    from hfrl.agents import agent_class
    from hfrl.device import seed_everything
    from hfrl.judges import NotMeasuredWarning

    for spec in args.imports:
        import_user_code(spec)
    overrides = config_overrides(args)
    if args.quiet:
        overrides["progress"] = False
    if args.data is not None and "dataset" in overrides:
        raise ConfigError("give either --dataset NAME or --data PATH, not both")
    data = {"dataset": Path(args.data)} if args.data is not None else {}  # read by the config, once
    if args.resume is not None:
        run_dir = Path(args.resume)
        cfg_path = run_dir / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"{run_dir}: not a finetune run directory (no config.json)")
        saved = read_json_object(cfg_path, "run config")
        agent = saved.pop("agent", None)
        if not isinstance(agent, str):
            raise ConfigError(f"{cfg_path}: run config names no agent (no 'agent' key)")
        if agent not in _agents():
            raise ConfigError(
                f"{run_dir} was trained by agent {agent!r}, which is not registered here; "
                "pass the --import that registers it"
            )
        unknown = set(overrides) - {"steps", "progress", "device", "source_data", "target_data"}
        if unknown:
            raise ConfigError(
                f"--resume keeps the run's settings; only --steps and --device may change, and your own images "
                f"must be given again (--data, --source-data, --target-data) (got {sorted(unknown)})"
            )
        overrides.update(data)
        try:
            config = build_config(agent, overrides, saved)
        except ConfigError as exc:
            raise ConfigError(f"{cfg_path}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{cfg_path}: not a valid {agent} run config ({exc})") from None
    else:
        agent = args.agent
        config = build_config(agent, {**overrides, **data})
        run_dir = args.out
    config = resolve_config_checkpoints(config)
    seed_everything(config.seed)
    with warnings.catch_warnings():  # what a run cannot measure is printed once, with its results
        warnings.simplefilter("ignore", NotMeasuredWarning)
        trainer = agent_class(agent)(config, run_dir=run_dir)
    if args.resume is not None:
        trainer.load_state()
        print(f"resuming {agent} at step {trainer.step} of {config.steps}")
    result = trainer.train()
    f = result.final
    before, after = f["target_good_rate_before"], f["target_good_rate_after"]
    rates = "not measured" if before != before else f"{before:.1%} -> {after:.1%}"  # NaN: no judge
    for note in f.get("not_measured", []):
        print(f"note: {note}", file=sys.stderr)
    print(
        f"{agent}: target good-rate {rates}, "
        f"source PSNR change {f['source_psnr_change']:+.2f} dB, target PSNR gain "
        f"{f['target_psnr_gain']['mean']:+.2f} ± {f['target_psnr_gain']['std']:.2f} dB "
        f"({f['target_psnr_gain']['share_improved']:.0%} of images improved), labels used {f['labels_used']}"
    )
    print(f"run directory: {result.run_dir}")
    return 0
