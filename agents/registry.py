"""Agents by name: what ``hfrl finetune --agent NAME``, sweeps and benchmarks look up.

Users add their own agent to every comparison by registering a factory::

    from hfrl.agents import register_agent, Trainer, TrainerConfig

    class MyTrainer(Trainer):
        name = "mine"
        config_class = TrainerConfig
        def update(self): ...

    register_agent("mine", MyTrainer)
"""

from __future__ import annotations

from typing import Any

from hfrl.agents.base import Trainer
from hfrl.agents.config import TrainerConfig
from hfrl.errors import ConfigError

AGENTS: dict[str, type[Trainer]] = {}


def register_agent(name: str, trainer: type[Trainer], *, overwrite: bool = False) -> None:
    """Make ``trainer`` available as ``name`` (``trainer.config_class`` is its config)."""
    if name in AGENTS and not overwrite:
        raise ConfigError(f"agent {name!r} is already registered")
    AGENTS[name] = trainer


def agent_class(name: str) -> type[Trainer]:
    """The trainer class registered as ``name``."""
    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; expected one of {', '.join(sorted(AGENTS))}")
    return AGENTS[name]


def make_config(name: str, **fields: Any) -> TrainerConfig:
    """The agent's config with ``fields`` set by name (unknown names are an error)."""
    return agent_class(name).config_class.from_dict(fields)


def make_trainer(name: str, config: TrainerConfig | None = None, **kwargs: Any) -> Trainer:
    """Build the agent ``name``; ``kwargs`` go to the trainer (``reward=``, ``run_dir=``, ...).

    Args:
        name: Registered agent name.
        config: Its config (default: the agent's defaults).
        **kwargs: Trainer keyword arguments.
    """
    cls = agent_class(name)
    return cls(config if config is not None else cls.config_class(), **kwargs)
