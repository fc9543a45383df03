"""``hfrl demo``: the seed paper's pipeline end to end on the embedded digits, with an HTML report.

This module parses the flags (every one a field of :class:`hfrl.runconfig.DemoConfig`) and calls
:func:`hfrl.experiments.demo.run_demo`, which runs the stages. The run directory keeps the resolved
configuration as ``config.toml`` and ``hfrl demo --config RUN/config.toml`` runs it again.
"""

from __future__ import annotations

import argparse

from hfrl.runconfig import DemoConfig, add_config_flags, flag_values, resolve_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``hfrl demo``."""
    p = subparsers.add_parser(
        "demo",
        help="the whole pipeline on the embedded digits (labels, reward, fine-tuning) with an HTML report",
        description="Run the seed paper's pipeline end to end: the shipped source generator's outputs on "
        "noisy target-domain digits, labels collected in rounds (synthetic labeler, or --human on the "
        "labelling page), a reward model fitted to them, fine-tuning with the default agent, evaluation, "
        "and report.html in the run directory. Every flag is a field of the run's TOML config; the run "
        "directory keeps it as config.toml, and --config FILE runs it again (flags override the file).",
    )
    p.add_argument(
        "--config", default=None, metavar="FILE", help="TOML config of a run (e.g. a run's config.toml)"
    )
    add_config_flags(p, DemoConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``hfrl demo``."""
    from hfrl.cli.common import resolve_config_checkpoints
    from hfrl.experiments.demo import run_demo

    config = resolve_config_checkpoints(resolve_config(args.config, flag_values(args), DemoConfig))
    run_demo(config)
    return 0
