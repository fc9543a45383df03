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

from typing import TYPE_CHECKING, Any

from hfrl.errors import ConfigError

if TYPE_CHECKING:
    from hfrl.agents.base import Trainer
    from hfrl.agents.config import TrainerConfig

AGENTS: dict[str, type[Trainer]] = {}
"""Registered agents by name: the built-in ones (:func:`register_builtin_agents`), then users' own."""
_builtins_registered = False


def register_builtin_agents() -> None:
    """Register the built-in agents in :data:`AGENTS`, once.

    Done on first use rather than on import, because their modules import torch and Stable-Baselines3;
    every function here (and every public name of :mod:`hfrl.agents`) calls it first.
    """
    global _builtins_registered
    if _builtins_registered:
        return
    _builtins_registered = True  # first: the agents' modules import this one
    try:
        from hfrl.agents.blindspot import BlindSpotFinetuneTrainer, Noise2SelfTrainer
        from hfrl.agents.dpo import DPOTrainer
        from hfrl.agents.ppo import PPOTrainer
        from hfrl.agents.reinforce import ReinforceTrainer
        from hfrl.agents.reward_grad import RewardGradTrainer
        from hfrl.agents.rwl import RWLTrainer
        from hfrl.agents.sb3 import SB3A2CTrainer, SB3Trainer
        from hfrl.agents.sb3_offpolicy import SB3SACTrainer, SB3TD3Trainer
    except BaseException:
        _builtins_registered = False
        raise
    for cls in (
        ReinforceTrainer,
        PPOTrainer,
        RWLTrainer,
        RewardGradTrainer,
        DPOTrainer,
        SB3Trainer,
        SB3A2CTrainer,
        SB3SACTrainer,
        SB3TD3Trainer,
        Noise2SelfTrainer,
        BlindSpotFinetuneTrainer,
    ):
        AGENTS[cls.name] = cls


def register_agent(name: str, trainer: type[Trainer], *, overwrite: bool = False) -> None:
    """Make ``trainer`` available as ``name`` (``trainer.config_class`` is its config)."""
    register_builtin_agents()
    if name in AGENTS and not overwrite:
        raise ConfigError(f"agent {name!r} is already registered")
    AGENTS[name] = trainer


def agent_class(name: str) -> type[Trainer]:
    """The trainer class registered as ``name``."""
    register_builtin_agents()
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
