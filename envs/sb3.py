"""A Stable-Baselines3 ``VecEnv`` over the batched denoising environment.

SB3 algorithms step a ``VecEnv``; wrapping every sub-environment in SB3's ``DummyVecEnv`` would run ``N``
reward-model calls per step. :class:`SB3VecEnvAdapter` instead presents one
:class:`~hfrl.envs.vector.BatchedDenoiseEnv` (bare or with reward-term wrappers) as an SB3 ``VecEnv``, so
each SB3 step is one batched step::

    venv = gymnasium.make_vec("hfrl/Denoise-v0", num_envs=64, vectorization_mode="vector_entry_point")
    env = VecMonitor(SB3VecEnvAdapter(venv))  # VecMonitor: episode returns in SB3's logs
    PPO("MlpPolicy", env).learn(10_000)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from hfrl.errors import ConfigError


class SB3VecEnvAdapter(VecEnv):
    """Stable-Baselines3 view of a Gymnasium vector environment that autoresets in the same step.

    Built for :class:`~hfrl.envs.vector.BatchedDenoiseEnv` (``make_vec(..., vectorization_mode=
    "vector_entry_point")``, optionally with :mod:`hfrl.envs.wrappers`), it works with any ``VectorEnv``
    whose ``metadata["autoreset_mode"]`` is ``SAME_STEP``. It converts Gymnasium's batched infos to SB3's
    list of dicts: each done episode's dict holds its ``final_info`` entries (``score``,
    ``reward_components``, ``good``, ...), ``terminal_observation`` and ``TimeLimit.truncated``.

    All SB3 "sub-environments" are one object: ``get_attr`` / ``env_method`` act on the vector
    environment once and repeat the answer per index; ``seed(s)`` seeds sub-environment ``i`` with
    ``s + i`` at the next reset, as with ``DummyVecEnv``.

    With ``autoreset=False`` each step only ends the episodes (the next call must be ``reset``; the
    observations it returns are the finished episodes' last ones), for a caller that resets before every
    rollout of one step anyway, as the SB3 trainers do: no batch of episodes is started and thrown away.
    It needs :class:`~hfrl.envs.vector.BatchedDenoiseEnv`, bare or with hfrl reward-term wrappers.

    Args:
        venv: The vector environment.
        autoreset: Start the next episodes in each step (default).
    """

    def __init__(self, venv: VectorEnv, autoreset: bool = True) -> None:
        if not isinstance(venv, VectorEnv):
            raise ConfigError(f"SB3VecEnvAdapter needs a gymnasium VectorEnv, got {type(venv).__name__}")
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ConfigError(
                f"SB3VecEnvAdapter needs autoreset_mode SAME_STEP (SB3 resets inside step), got {mode}"
            )
        self.venv = venv
        self.autoreset = bool(autoreset)
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> VecEnvObs:
        """Reset every sub-environment with the seeds and options set by ``seed()`` / ``set_options()``."""
        seed = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, info = self.venv.reset(seed=seed, options=self._merged_options())
        self.reset_infos = split_infos(info, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return obs

    def _merged_options(self) -> dict[str, Any] | None:
        """SB3 keeps one options dict per sub-env; the vector env takes one dict of scalars or N values."""
        if not any(self._options):
            return None
        keys = set(self._options[0])
        if any(set(o) != keys for o in self._options):
            raise ConfigError("set_options: every sub-environment needs the same option keys")
        return {k: [o[k] for o in self._options] for k in keys}

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions; :meth:`step_wait` runs the batched step."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """One batched step: observations (of the next episodes), float32 rewards, dones and infos."""
        if self._actions is None:
            raise ConfigError("step_wait() without step_async(actions)")
        if self.autoreset:
            obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        else:
            obs, rewards, terminated, truncated, infos = self.venv.step(self._actions, autoreset=False)
        self._actions = None
        dones = np.logical_or(terminated, truncated)
        per_env = split_infos(infos.get("final_info", {}), self.num_envs)
        final_obs = infos.get("final_obs")
        for i, info in enumerate(per_env):
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            if dones[i] and final_obs is not None:
                info["terminal_observation"] = final_obs[i]
        reset_part = {
            k: v
            for k, v in infos.items()
            if k not in ("final_obs", "_final_obs", "final_info", "_final_info")
        }
        self.reset_infos = split_infos(reset_part, self.num_envs)
        return obs, np.asarray(rewards, dtype=np.float32), dones, per_env

    def close(self) -> None:
        """Close the vector environment."""
        self.venv.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One frame per sub-environment (``render_mode="rgb_array"``), else ``None`` s."""
        frames = self.venv.render() if self.render_mode == "rgb_array" else None
        return list(frames) if frames is not None else [None] * self.num_envs

    def _lookup(self, name: str) -> Any:
        for env in _chain(self.venv):
            if hasattr(env, name):
                return getattr(env, name)
        raise AttributeError(f"{type(self.venv.unwrapped).__name__} has no attribute {name!r}")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector environment's attribute (searched through its wrappers), once per index."""
        value = self._lookup(attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on the outermost wrapper that has it (else on the bare environment)."""
        target = next((env for env in _chain(self.venv) if hasattr(env, attr_name)), self.venv.unwrapped)
        setattr(target, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the vector environment once (e.g. ``set_policy``); its result per index."""
        result = self._lookup(method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether any wrapper of the vector environment is a ``wrapper_class``, per index."""
        wrapped = any(isinstance(env, wrapper_class) for env in _chain(self.venv))
        return [wrapped for _ in self._get_indices(indices)]


def _chain(venv: VectorEnv) -> Iterable[VectorEnv]:
    """The wrappers from the outside in, then the bare environment."""
    env: VectorEnv = venv
    while isinstance(env, VectorWrapper):
        yield env
        env = env.env
    yield env


def split_infos(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's batched info (arrays with ``_key`` masks) as SB3's list of per-environment dicts.

    Args:
        info: Batched info; nested dicts are split recursively.
        num_envs: Number of sub-environments.
    """
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get(f"_{key}")
        if isinstance(value, dict):
            column: Sequence[Any] = split_infos(value, num_envs)
        elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype != object:
            column = value.tolist()  # Python scalars, as a single env reports them
        else:
            column = list(value)
        for i in range(num_envs):
            if mask is None or mask[i]:
                out[i][key] = column[i]
    return out
