"""The batched denoising environment: ``N`` one-step episodes held as one tensor on one device.

:class:`BatchedDenoiseEnv` is what ``gymnasium.make_vec("hfrl/Denoise-v0", num_envs=N,
vectorization_mode="vector_entry_point")`` returns. It keeps the batch as ``(N, C, H, W)`` tensors on the
CPU or a GPU, scores all ``N`` actions with one reward call, and draws the next ``N`` episodes with one
vectorised noise call. It has two faces over the same state:

* NumPy, for Gymnasium users: ``reset`` / ``step``, laid out exactly as Gymnasium's ``SyncVectorEnv``
  with ``AutoresetMode.SAME_STEP`` lays out ``N`` :class:`~hfrl.envs.denoise.DenoiseEnv` s;
* torch, for agents: ``reset_torch`` / ``step_torch`` take and return tensors on the device, with no
  NumPy round trip.

Sub-environment ``i`` has its own ``np_random``; ``reset(seed=s)`` seeds it with ``s + i``, as
``SyncVectorEnv`` does, so sub-environment ``i`` reproduces a single ``DenoiseEnv`` reset with seed
``s + i`` (observations exactly; scores up to float rounding, since a batched forward may round
differently from a forward of one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from hfrl.envs.denoise import (
    DEFAULT_RENDER_SCALE,
    DenoiseTask,
    Episodes,
    Transition,
    check_render,
    render_frame,
)
from hfrl.errors import ConfigError

SeedSpec = int | Sequence[int | None] | None
"""A vector reset seed: one int (sub-env ``i`` gets ``seed + i``), one per sub-env, or ``None``."""


class BatchedDenoiseEnv(VectorEnv):
    """``N`` denoising episodes at once, as one batch on one device (a native Gymnasium ``VectorEnv``).

    Every step ends every episode, so the environment autoresets in the same step
    (``metadata["autoreset_mode"] = AutoresetMode.SAME_STEP``): ``step`` returns the *next* episodes'
    first observations, and the finished episodes' last observations and infos under ``final_obs`` and
    ``final_info``. No action is ever ignored.

    NumPy face (``reset`` / ``step``): observations ``(N, C, H, W)`` float32, rewards ``(N,)`` float64,
    infos as Gymnasium's ``SyncVectorEnv`` builds them — each key holds an ``(N,)`` array with a ``_key``
    mask; ``final_obs`` is an object array of ``(C, H, W)`` arrays; ``final_info`` holds the step infos
    of :class:`~hfrl.envs.denoise.DenoiseEnv` (``score``, ``reward_components``, ``good``, ``psnr``,
    ``ssim``, ``class``, ``index``, ``noise_level``); the new episodes' reset infos sit at the top level.

    Torch face (``reset_torch`` / ``step_torch``): the same structure with tensors on the device, no
    masks (every sub-environment finishes every step) and ``final_obs`` one ``(N, C, H, W)`` tensor.

    Args:
        num_envs: ``N``, the batch size.
        render_mode: ``None`` or ``"rgb_array"``: ``render()`` returns one frame per sub-environment.
        render_scale: Upscaling factor of rendered frames (default 4).
        seed: Seeds the sub-environments (``seed + i``) at construction.
        **task_kwargs: Every other argument of :class:`~hfrl.envs.denoise.DenoiseEnv` (``reward``,
            ``dataset``, ``domain``, ``split``, ``noise``, ``noise_level``, ``evaluate``, ``expose_clean``,
            ``device``, ...), with the same defaults.

    Example:
        >>> import gymnasium as gym, hfrl.envs, torch
        >>> envs = gym.make_vec("hfrl/Denoise-v0", num_envs=256, vectorization_mode="vector_entry_point",
        ...                     reward=lambda noisy, out: -(out - noisy).abs().mean((1, 2, 3)))
        >>> obs, info = envs.unwrapped.reset_torch(seed=0)  # (256, 1, 28, 28) tensor
        >>> obs, reward, terminated, truncated, info = envs.unwrapped.step_torch(obs.clamp(0.1, 0.9))
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        *,
        render_mode: str | None = None,
        render_scale: int = DEFAULT_RENDER_SCALE,
        seed: int | None = None,
        **task_kwargs: Any,
    ) -> None:
        if int(num_envs) < 1:
            raise ConfigError(f"num_envs must be at least 1, got {num_envs}")
        check_render(render_mode, render_scale, self.metadata["render_modes"])
        self.task = DenoiseTask(**task_kwargs)
        self.num_envs = int(num_envs)
        self.single_observation_space = spaces.Box(0.0, 1.0, self.task.image_shape, np.float32)
        self.single_action_space = spaces.Box(0.0, 1.0, self.task.image_shape, np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.render_scale = int(render_scale)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._episodes: Episodes | None = None
        self._transition: Transition | None = None
        if seed is not None:
            self._seed(seed)

    @property
    def device(self) -> torch.device:
        """Where the batch lives."""
        return self.task.device

    @property
    def episodes(self) -> Episodes | None:
        """The running batch of episodes (``None`` before the first reset).

        It holds the clean images: pass it to oracles and labelers (which stand in for people), never use it
        as an agent's input.
        """
        return self._episodes

    @property
    def last_transition(self) -> Transition | None:
        """The last finished batch of episodes (for reward terms and rendering)."""
        return self._transition

    @property
    def sub_env_np_randoms(self) -> list[np.random.Generator | None]:
        """Each sub-environment's ``np_random`` (``None`` until first used)."""
        return list(self._rngs)

    def _seed(self, seed: SeedSpec) -> None:
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ConfigError(f"got {len(seeds)} seeds for {self.num_envs} sub-environments")
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)

    # -- torch face ----------------------------------------------------------------------------------------

    def reset_torch(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Start ``N`` new episodes.

        Args:
            seed: One int (sub-env ``i`` gets ``seed + i``), a sequence of ``N`` ints or ``None``s, or
                ``None`` to continue each sub-environment's ``np_random``.
            options: ``{"index": int or N ints, "noise_level": float or N floats, "group": K}``, for
                this reset only; ``group`` gives each run of ``K`` consecutive sub-environments the same
                image and noise (see :meth:`DenoiseTask.start <hfrl.envs.denoise.DenoiseTask.start>`).

        Returns:
            ``(obs, info)``: ``(N, C, H, W)`` noisy images on the device and
            ``{"index": (N,), "noise_level": (N,)}`` (plus ``"clean"`` when exposed).
        """
        super().reset(seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
        self._seed(seed)
        index, key = self.task.draw(self._rngs)  # type: ignore[arg-type]  # _seed filled every slot
        self._episodes = self.task.start(index, key, options)
        self._transition = None
        return self._episodes.noisy.clone(), _cloned(self.task.reset_info(self._episodes))

    def step_torch(
        self, actions: torch.Tensor | np.ndarray, *, autoreset: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Score ``N`` output images, end every episode and (by default) start the next ``N``.

        Args:
            actions: ``(N, C, H, W)`` float outputs (clipped to ``[0, 1]``); a tensor on any device.
            autoreset: Start the next ``N`` episodes in the same step (default, Gymnasium's ``SAME_STEP``).
                ``False`` ends the episodes only, for a caller that resets next anyway (the trainers'
                one-step updates, which reset with their own options): no episodes are drawn and
                thrown away, the next call must be a reset, and sub-environment ``i`` still follows the
                single environment seeded ``s + i`` (which draws only at reset).

        Returns:
            ``(obs, reward, terminated, truncated, info)``: the next episodes' observations
            ``(N, C, H, W)``, float32 rewards ``(N,)``, all-True / all-False bool ``(N,)``, and
            ``{"final_obs": (N, C, H, W), "final_info": {...}, "index": ..., "noise_level": ...}``.
            With ``autoreset=False``, ``obs`` is the finished episodes' ``final_obs`` and ``info`` holds
            ``final_obs`` and ``final_info`` only.

        Raises:
            ResetNeeded: before the first reset, or after a step with ``autoreset=False``.
            DataError: for a wrong shape or dtype, NaN or inf.
        """
        if self._episodes is None:
            raise ResetNeeded("BatchedDenoiseEnv.step() needs episodes: call reset() first")
        checked = self.task.check_actions(actions, self.num_envs)
        reward, final_info, self._transition = self.task.finish(self._episodes, checked)
        terminated = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        truncated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        info = {"final_obs": self._transition.output.clone(), "final_info": final_info}
        if not autoreset:
            self._episodes = None
            return self._transition.output.clone(), reward, terminated, truncated, info
        index, key = self.task.draw(self._rngs)  # type: ignore[arg-type]
        self._episodes = self.task.start(index, key)
        info.update(_cloned(self.task.reset_info(self._episodes)))
        return self._episodes.noisy.clone(), reward, terminated, truncated, info

    # -- NumPy face ----------------------------------------------------------------------------------------

    def reset(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """NumPy version of :meth:`reset_torch`: ``(N, C, H, W)`` float32 and infos with ``_key`` masks."""
        obs, info = self.reset_torch(seed=seed, options=options)
        return _array(obs), to_numpy_info(info, self.num_envs)

    def step(
        self, actions: np.ndarray, *, autoreset: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """NumPy version of :meth:`step_torch`, laid out as Gymnasium's ``SyncVectorEnv`` (``SAME_STEP``).

        Args:
            actions: ``(N, C, H, W)`` float outputs (clipped to ``[0, 1]``).
            autoreset: See :meth:`step_torch` (``False``: end the episodes only; reset next).

        Returns:
            ``(obs, rewards, terminations, truncations, infos)``: float32 ``(N, C, H, W)``, float64 ``(N,)``,
            bool ``(N,)``, bool ``(N,)`` and infos (see the class docstring).
        """
        obs, reward, terminated, truncated, info = self.step_torch(actions, autoreset=autoreset)
        return (
            _array(obs),
            reward.cpu().numpy().astype(np.float64),
            _array(terminated),
            _array(truncated),
            to_numpy_info(info, self.num_envs),
        )

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One ``noisy | output (| clean)`` frame per sub-environment (``rgb_array`` mode), else ``None``.

        After a step the frames show the episodes that just finished; after a reset, the new observations
        beside a dark placeholder.
        """
        if self.render_mode != "rgb_array":
            return None
        if self._transition is not None:
            ep, outputs = self._transition.episodes, list(self._transition.output)
        elif self._episodes is not None:
            ep, outputs = self._episodes, [None] * self.num_envs
        else:
            raise ResetNeeded("BatchedDenoiseEnv.render() needs episodes: call reset() first")
        frames = []
        for i in range(self.num_envs):
            panels = [ep.noisy[i], outputs[i]] + ([ep.clean[i]] if self.task.expose_clean else [])
            frames.append(render_frame(panels, self.render_scale))
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        """Release the batch's tensors."""
        self._episodes = None
        self._transition = None


def _cloned(info: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in info.items()}


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A new NumPy array (never sharing memory with the environment's tensors)."""
    return np.array(tensor.detach().cpu().numpy(), copy=True)


def to_numpy_info(info: dict[str, Any], num_envs: int) -> dict[str, Any]:
    """Torch-face infos to Gymnasium's vector layout: NumPy arrays, each with an all-True ``_key`` mask.

    Per-episode scalars become ``(N,)`` arrays typed as ``SyncVectorEnv`` types the Python scalars of
    :class:`~hfrl.envs.denoise.DenoiseEnv` (floats as float64, ints as int64, bools as bool); images keep
    float32; ``final_obs`` becomes an object array of ``(C, H, W)`` arrays.

    Args:
        info: Tensors (and nested dicts of tensors) with a leading dimension ``N``.
        num_envs: ``N``.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = to_numpy_info(value, num_envs)
        elif key == "final_obs":
            arrays = _array(value)
            out[key] = np.empty(num_envs, dtype=object)
            for i in range(num_envs):
                out[key][i] = arrays[i]
        else:
            array = _array(value)
            if array.ndim == 1 and array.dtype.kind == "f":
                array = array.astype(np.float64)
            out[key] = array
        out[f"_{key}"] = np.ones(num_envs, dtype=np.bool_)
    return out
