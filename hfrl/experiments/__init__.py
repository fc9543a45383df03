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

from typing import TYPE_CHECKING

from hfrl.lazy import lazy_exports

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


def _register() -> None:
    from hfrl.agents.registry import register_builtin_agents

    register_builtin_agents()


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, before=_register)


__all__ = [
    "collect_labels",
    "compare_agents",
    "load_results",
    "prepare_reward",
    "run_demo",
    "run_sweep",
    "summarise",
]
