"""Experiments: runs that put the algorithms, the feedback and the rewards together.

:mod:`hfrl.agents` holds the fine-tuning algorithms and their trainer; this package holds what is run
with them:

* :mod:`~hfrl.experiments.demo`: the seed paper's pipeline end to end with its report (``hfrl demo``);
* :mod:`~hfrl.experiments.reward`: labels to a reward model on the shipped task (:func:`prepare_reward`),
  collecting the labels in rounds through the feedback queue (:mod:`~hfrl.experiments.labels`); these join
  :mod:`hfrl.feedback` and :mod:`hfrl.rewards`, which do not import each other the other way round;
* :mod:`~hfrl.experiments.compare`: every agent on the same task, reward and seeds (``hfrl bench``);
* :mod:`~hfrl.experiments.sweep`: one agent over a grid of settings and seeds, resumable (``hfrl
  sweep``), with its cells (:mod:`~hfrl.experiments.cells`), where they run
  (:mod:`~hfrl.experiments.pool`) and the results table and plots (:mod:`~hfrl.experiments.summary`).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hfrl.experiments.compare import compare_agents
    from hfrl.experiments.demo import run_demo
    from hfrl.experiments.labels import collect_labels
    from hfrl.experiments.reward import prepare_reward
    from hfrl.experiments.sweep import load_results, run_sweep, summarise

_EXPORTS = {
    "compare_agents": "hfrl.experiments.compare",
    "collect_labels": "hfrl.experiments.labels",
    "load_results": "hfrl.experiments.sweep",
    "prepare_reward": "hfrl.experiments.reward",
    "run_demo": "hfrl.experiments.demo",
    "run_sweep": "hfrl.experiments.sweep",
    "summarise": "hfrl.experiments.sweep",
}
"""Public names and the module each comes from, imported on first use (``import hfrl.experiments`` alone
imports no torch)."""


def __getattr__(name: str) -> Any:
    """Import a public name, or a submodule, on first use."""
    if name in _EXPORTS:
        from hfrl.agents.registry import register_builtin_agents

        register_builtin_agents()
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in {m.name for m in pkgutil.iter_modules(__path__)}:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "collect_labels",
    "compare_agents",
    "load_results",
    "prepare_reward",
    "run_demo",
    "run_sweep",
    "summarise",
]
