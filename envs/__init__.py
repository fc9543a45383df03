"""Gymnasium environments for hfrl (installed as ``hfrl.envs``).

Importing this package registers:

* ``hfrl/Denoise-v0``: denoising one noisy image is one whole episode
  (:class:`~hfrl.envs.denoise.DenoiseEnv`); ``gymnasium.make_vec(..., vectorization_mode=
  "vector_entry_point")`` gives the batched :class:`~hfrl.envs.vector.BatchedDenoiseEnv`.
* ``hfrl/DiffusionDenoise-v0``: the reverse chain of a diffusion model, one step per denoising step
  (:class:`~hfrl.envs.diffusion.DiffusionDenoiseEnv`, batched:
  :class:`~hfrl.envs.diffusion.BatchedDiffusionDenoiseEnv`).

Reward terms and their wrappers live in :mod:`hfrl.envs.wrappers`, rewards in :mod:`hfrl.envs.rewards`,
and the Stable-Baselines3 adapter in :mod:`hfrl.envs.sb3` (imported on demand: it loads SB3).
"""

from gymnasium.envs.registration import register, registry

from hfrl.envs.denoise import DenoiseEnv, DenoiseTask, Transition
from hfrl.envs.diffusion import BatchedDiffusionDenoiseEnv, DiffusionDenoiseEnv, DiffusionTask
from hfrl.envs.rewards import LabelerReward, RewardFn, resolve_reward
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.envs.wrappers import (
    ConsistencyTerm,
    KLTerm,
    RewardModelTerm,
    RewardTerm,
    RewardTermWrapper,
    SourceAuxTerm,
    VectorRewardTermWrapper,
    add_reward_terms,
)

DENOISE_ID = "hfrl/Denoise-v0"
DIFFUSION_ID = "hfrl/DiffusionDenoise-v0"

if DENOISE_ID not in registry:
    # One step is one episode, so there is no max_episode_steps (and hence no TimeLimit wrapper).
    register(
        id=DENOISE_ID,
        entry_point="hfrl.envs.denoise:DenoiseEnv",
        vector_entry_point="hfrl.envs.vector:BatchedDenoiseEnv",
    )

if DIFFUSION_ID not in registry:
    # Episodes end by themselves after num_inference_steps steps, so no TimeLimit wrapper either.
    register(
        id=DIFFUSION_ID,
        entry_point="hfrl.envs.diffusion:DiffusionDenoiseEnv",
        vector_entry_point="hfrl.envs.diffusion:BatchedDiffusionDenoiseEnv",
    )

__all__ = [
    "DENOISE_ID",
    "DIFFUSION_ID",
    "BatchedDenoiseEnv",
    "BatchedDiffusionDenoiseEnv",
    "ConsistencyTerm",
    "DenoiseEnv",
    "DenoiseTask",
    "DiffusionDenoiseEnv",
    "DiffusionTask",
    "KLTerm",
    "LabelerReward",
    "RewardFn",
    "RewardModelTerm",
    "RewardTerm",
    "RewardTermWrapper",
    "SourceAuxTerm",
    "Transition",
    "VectorRewardTermWrapper",
    "add_reward_terms",
    "resolve_reward",
]
