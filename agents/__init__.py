"""Fine-tuning agents for hfrl (installed as ``hfrl.agents``).

Every agent shares one trainer loop (:class:`~hfrl.agents.base.Trainer`), one objective (reward minus
``kl``, ``aux`` and ``consistency`` penalties) and one way of logging. Available by name:

=============== =============================================================================
``reinforce``   REINFORCE with a leave-one-out baseline over 8 actions per input (RLOO)
``ppo``         PPO-clip with a KL penalty to the pretrained policy (DPOK)
``rwl``         reward-weighted likelihood (Lee et al. 2023), with a filtered variant
``reward-grad`` direct reward gradient through a frozen reward model (the seed paper)
``dpo``         DPO on pairs of outputs, no reward model (a D3PO-style preference baseline)
``sb3-ppo``     Stable-Baselines3 PPO with the generator as the actor's mean
``sb3-a2c``     Stable-Baselines3 A2C, likewise
``sb3-sac``     Stable-Baselines3 SAC, the generator's logits as the squashed Gaussian's mean
``sb3-td3``     Stable-Baselines3 TD3, the generator as the deterministic actor
=============== =============================================================================

Online fine-tuning of the diffusion model from feedback (:mod:`hfrl.agents.hero`, ``hfrl hero``):
``hero`` (HERO: triplet embedding reward + PPO + noise recycling), ``rwl`` (reward-weighted denoising
loss), ``ddpo`` (PPO with a reward model and DPOK's KL) and ``d3po`` (pairwise, no reward model); see
:func:`~hfrl.agents.hero.make_online_trainer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfrl.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrl.agents.base import NonFiniteLossError, Trainer, TrainResult
    from hfrl.agents.blindspot import BlindSpotFinetuneTrainer, Noise2SelfTrainer
    from hfrl.agents.callbacks import Callback, CallbackList, CheckpointCallback, EarlyStopping, EvalCallback
    from hfrl.agents.config import (
        BlindSpotConfig,
        DPOConfig,
        Noise2SelfConfig,
        PPOConfig,
        ReinforceConfig,
        RewardGradConfig,
        RWLConfig,
        SB3A2CConfig,
        SB3Config,
        SB3OffPolicyConfig,
        SB3SACConfig,
        SB3TD3Config,
        TrainerConfig,
    )
    from hfrl.agents.dpo import DPOTrainer
    from hfrl.agents.hero import (
        HeroConfig,
        HeroTrainer,
        make_online_config,
        make_online_trainer,
        recycle_noise,
    )
    from hfrl.agents.ppo import PPOTrainer
    from hfrl.agents.registry import AGENTS, agent_class, make_config, make_trainer, register_agent
    from hfrl.agents.reinforce import ReinforceTrainer
    from hfrl.agents.reward_grad import RewardGradTrainer
    from hfrl.agents.rwl import RWLTrainer
    from hfrl.agents.sb3 import GeneratorActorCriticPolicy, SB3A2CTrainer, SB3Trainer
    from hfrl.agents.sb3_offpolicy import (
        GeneratorSACPolicy,
        GeneratorTD3Policy,
        SB3OffPolicyTrainer,
        SB3SACTrainer,
        SB3TD3Trainer,
    )
    from hfrl.experiments.compare import compare_agents
    from hfrl.experiments.sweep import load_results, run_sweep, summarise

_EXPORTS = {
    "NonFiniteLossError": "hfrl.agents.base",
    "Trainer": "hfrl.agents.base",
    "TrainResult": "hfrl.agents.base",
    "BlindSpotConfig": "hfrl.agents.config",
    "BlindSpotFinetuneTrainer": "hfrl.agents.blindspot",
    "Noise2SelfConfig": "hfrl.agents.config",
    "Noise2SelfTrainer": "hfrl.agents.blindspot",
    "Callback": "hfrl.agents.callbacks",
    "CallbackList": "hfrl.agents.callbacks",
    "CheckpointCallback": "hfrl.agents.callbacks",
    "EarlyStopping": "hfrl.agents.callbacks",
    "EvalCallback": "hfrl.agents.callbacks",
    "compare_agents": "hfrl.experiments.compare",
    "TrainerConfig": "hfrl.agents.config",
    "DPOConfig": "hfrl.agents.config",
    "DPOTrainer": "hfrl.agents.dpo",
    "HeroConfig": "hfrl.agents.hero",
    "HeroTrainer": "hfrl.agents.hero",
    "make_online_config": "hfrl.agents.hero",
    "make_online_trainer": "hfrl.agents.hero",
    "recycle_noise": "hfrl.agents.hero",
    "PPOConfig": "hfrl.agents.config",
    "PPOTrainer": "hfrl.agents.ppo",
    "AGENTS": "hfrl.agents.registry",
    "agent_class": "hfrl.agents.registry",
    "make_config": "hfrl.agents.registry",
    "make_trainer": "hfrl.agents.registry",
    "register_agent": "hfrl.agents.registry",
    "ReinforceConfig": "hfrl.agents.config",
    "ReinforceTrainer": "hfrl.agents.reinforce",
    "RewardGradConfig": "hfrl.agents.config",
    "RewardGradTrainer": "hfrl.agents.reward_grad",
    "RWLConfig": "hfrl.agents.config",
    "RWLTrainer": "hfrl.agents.rwl",
    "GeneratorActorCriticPolicy": "hfrl.agents.sb3",
    "SB3A2CConfig": "hfrl.agents.config",
    "SB3A2CTrainer": "hfrl.agents.sb3",
    "SB3Config": "hfrl.agents.config",
    "SB3Trainer": "hfrl.agents.sb3",
    "GeneratorSACPolicy": "hfrl.agents.sb3_offpolicy",
    "GeneratorTD3Policy": "hfrl.agents.sb3_offpolicy",
    "SB3OffPolicyConfig": "hfrl.agents.config",
    "SB3OffPolicyTrainer": "hfrl.agents.sb3_offpolicy",
    "SB3SACConfig": "hfrl.agents.config",
    "SB3SACTrainer": "hfrl.agents.sb3_offpolicy",
    "SB3TD3Config": "hfrl.agents.config",
    "SB3TD3Trainer": "hfrl.agents.sb3_offpolicy",
    "load_results": "hfrl.experiments.sweep",
    "run_sweep": "hfrl.experiments.sweep",
    "summarise": "hfrl.experiments.sweep",
}
"""Public names and the module each comes from, imported on first use: ``from hfrl.agents import X``
works as before, while importing a light submodule such as :mod:`hfrl.agents.config` (the CLI's
``--help``) imports no torch. Any of these names also registers the built-in agents in :data:`AGENTS`
(:func:`~hfrl.agents.registry.register_builtin_agents`)."""

LABEL_FREE_AGENTS = ("n2s", "n2s-finetune")
"""Agents that learn from the noisy target inputs alone (no reward, no label): the label-free baselines."""


def _register() -> None:
    from hfrl.agents.registry import register_builtin_agents

    register_builtin_agents()


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, before=_register)


__all__ = [
    "AGENTS",
    "BlindSpotConfig",
    "BlindSpotFinetuneTrainer",
    "LABEL_FREE_AGENTS",
    "Noise2SelfConfig",
    "Noise2SelfTrainer",
    "Callback",
    "CallbackList",
    "CheckpointCallback",
    "DPOConfig",
    "DPOTrainer",
    "EarlyStopping",
    "EvalCallback",
    "GeneratorActorCriticPolicy",
    "GeneratorSACPolicy",
    "GeneratorTD3Policy",
    "HeroConfig",
    "HeroTrainer",
    "NonFiniteLossError",
    "PPOConfig",
    "PPOTrainer",
    "RWLConfig",
    "RWLTrainer",
    "ReinforceConfig",
    "ReinforceTrainer",
    "RewardGradConfig",
    "RewardGradTrainer",
    "SB3A2CTrainer",
    "SB3A2CConfig",
    "SB3Config",
    "SB3Trainer",
    "SB3OffPolicyConfig",
    "SB3OffPolicyTrainer",
    "SB3SACConfig",
    "SB3SACTrainer",
    "SB3TD3Config",
    "SB3TD3Trainer",
    "TrainResult",
    "Trainer",
    "TrainerConfig",
    "agent_class",
    "compare_agents",
    "make_config",
    "make_online_config",
    "make_online_trainer",
    "make_trainer",
    "load_results",
    "recycle_noise",
    "register_agent",
    "run_sweep",
    "summarise",
]
