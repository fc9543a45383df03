"""Agent comparison moved to :mod:`hfrl.experiments.compare`; this module re-exports it for old imports."""

from __future__ import annotations

from hfrl.experiments.compare import (
    RESULT_COLUMNS,
    SUMMARY_METRICS,
    TASK_FIELDS,
    RewardFactory,
    RewardSource,
    agent_configs,
    compare_agents,
    describe_reward,
    format_run,
    plot_comparison,
    run_one,
    summarize,
    summary_markdown,
)

__all__ = [
    "RESULT_COLUMNS",
    "SUMMARY_METRICS",
    "TASK_FIELDS",
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
