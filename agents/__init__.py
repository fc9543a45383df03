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
=============== =============================================================================

Online fine-tuning of the diffusion model from feedback (:mod:`hfrl.agents.hero`, ``hfrl hero``):
``hero`` (HERO: triplet embedding reward + PPO + noise recycling), ``rwl`` (reward-weighted denoising
loss), ``ddpo`` (PPO with a reward model and DPOK's KL) and ``d3po`` (pairwise, no reward model); see
:func:`~hfrl.agents.hero.make_online_trainer`.
"""

from hfrl.agents.base import NonFiniteLossError, Trainer, TrainResult
from hfrl.agents.blindspot import (
    BlindSpotConfig,
    BlindSpotFinetuneTrainer,
    Noise2SelfConfig,
    Noise2SelfTrainer,
)
from hfrl.agents.callbacks import Callback, CallbackList, CheckpointCallback, EarlyStopping, EvalCallback
from hfrl.agents.compare import compare_agents
from hfrl.agents.config import TrainerConfig
from hfrl.agents.dpo import DPOConfig, DPOTrainer
from hfrl.agents.hero import HeroConfig, HeroTrainer, make_online_config, make_online_trainer, recycle_noise
from hfrl.agents.ppo import PPOConfig, PPOTrainer
from hfrl.agents.registry import AGENTS, agent_class, make_config, make_trainer, register_agent
from hfrl.agents.reinforce import ReinforceConfig, ReinforceTrainer
from hfrl.agents.reward_grad import RewardGradConfig, RewardGradTrainer
from hfrl.agents.rwl import RWLConfig, RWLTrainer
from hfrl.agents.sb3 import GeneratorActorCriticPolicy, SB3A2CConfig, SB3A2CTrainer, SB3Config, SB3Trainer
from hfrl.agents.sweep import load_results, run_sweep, summarise

for _cls in (
    ReinforceTrainer,
    PPOTrainer,
    RWLTrainer,
    RewardGradTrainer,
    DPOTrainer,
    SB3Trainer,
    SB3A2CTrainer,
    Noise2SelfTrainer,
    BlindSpotFinetuneTrainer,
):
    register_agent(_cls.name, _cls, overwrite=True)

LABEL_FREE_AGENTS = (Noise2SelfTrainer.name, BlindSpotFinetuneTrainer.name)
"""Agents that learn from the noisy target inputs alone (no reward, no label): the label-free baselines."""

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
