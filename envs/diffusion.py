"""``hfrl/DiffusionDenoise-v0``: the reverse chain of a diffusion model as a multi-step episode.

The denoising diffusion MDP of DDPO (Black et al. 2023, arXiv 2305.13301): the state is ``(x_t, t)``, the
action is the next sample ``x_{t-1}``, the transition is deterministic (the next state *is* the action, at
the next timestep of the sampler), and the reward is zero until the last step, where a reward model scores
the final image ``x_0``. The policy is the diffusion model with its scheduler: a stochastic scheduler step
(:class:`hfrl.diffusion.DDIMScheduler` with ``eta > 0`` or :class:`~hfrl.diffusion.DDPMScheduler`) is a
Gaussian policy whose log-probability :meth:`~hfrl.diffusion.Scheduler.step` returns::

    env = gymnasium.make("hfrl/DiffusionDenoise-v0", num_inference_steps=10)
    model = hfrl.diffusion.load_ddpm()
    scheduler = hfrl.diffusion.DDIMScheduler(model.schedule, num_inference_steps=10, eta=1.0)
    obs, info = env.reset(seed=0)
    while True:
        x_t = torch.from_numpy(obs["x_t"])[None]
        out = scheduler.step(model(x_t, int(obs["t"])), int(obs["t"]), x_t, generator=g)
        obs, reward, terminated, truncated, info = env.step(out.prev_sample[0].numpy())   # out.log_prob: (1,)
        if terminated:
            break

A rectified flow (``model="flow"``, :mod:`hfrl.flow`) drives the same episode with
:class:`~hfrl.flow.FlowScheduler` (Flow-GRPO's SDE for log-probabilities); its timesteps ``k = 1000 t`` start
at 1000 (pure noise).

:class:`DiffusionTask` holds what the single and the batched environment share and works on whole
batches; :class:`DiffusionDenoiseEnv` is the Gymnasium environment over a batch of one and
:class:`BatchedDiffusionDenoiseEnv` the native vector environment over ``N`` chains run in lockstep, so
the two give the same results for the same seeds (sub-environment ``i`` with ``seed + i``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import nn

from hfrl.censoring import SEVEN, MalignEvaluator, MalignLabeler, load_censor_reward
from hfrl.checkpoint import checkpoint_paths, read_checkpoint_config
from hfrl.device import resolve_device
from hfrl.diffusion import (
    DDPM_KIND,
    DEFAULT_INFERENCE_STEPS,
    MODEL_KINDS,
    NoiseSchedule,
    Scheduler,
    UNet2D,
    model_checkpoint,
    to_images,
)
from hfrl.envs.denoise import DEFAULT_RENDER_SCALE, check_render, keyed_normal, render_frame
from hfrl.envs.vector import SeedSpec
from hfrl.errors import ConfigError, DataError
from hfrl.flow import FLOW_DIGITS, FLOW_KIND, FlowScheduler
from hfrl.judges import Evaluator

BOUND = 10.0
"""Observations and actions live in ``[-10, 10]``: ten standard deviations of the unit Gaussian the chain
starts from, so the reverse chain's samples never reach it (Stable-Baselines3 needs finite bounds)."""

ImageReward = Callable[[torch.Tensor], torch.Tensor]
"""A reward on final images: ``(B, 1, H, W)`` in ``[0, 1]`` -> ``(B,)`` scores, higher is better."""
DiffusionRewardSpec = ImageReward | nn.Module | str | os.PathLike | None


class BenignOracle:
    """Oracle reward: the synthetic labeler's probability that an image is benign (not a crossed 7).

    It stands in for people in tests and demos and bounds what a learned reward could reach; it is the
    labeler's detector, never the evaluator's.

    Args:
        labeler: The labeler (default: the shipped one on ``device``).
        device: Where to load the shipped labeler.
    """

    def __init__(self, labeler: MalignLabeler | None = None, device: str | torch.device = "cpu") -> None:
        self.labeler = labeler if labeler is not None else MalignLabeler.from_pretrained(device=device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``P(benign)`` for images ``(B, 1, H, W)`` in ``[0, 1]``."""
        return (1.0 - self.labeler.malign_prob(images)).to(images.device)

    def __repr__(self) -> str:
        return "BenignOracle()"


def resolve_image_reward(spec: DiffusionRewardSpec, device: torch.device) -> ImageReward | None:
    """Turn the ``reward`` argument into a callable on final images.

    Args:
        spec: ``None`` (reward 0); ``"labeler"`` (:class:`BenignOracle`); a ``censor_reward`` checkpoint path
            (its ``score``, ``P(benign)`` of clean images); a module with ``score(images)`` (e.g. a
            :class:`~hfrl.censoring.CensorReward` or :class:`~hfrl.censoring.ProductEnsemble`); or any
            callable ``images -> (B,)``.
        device: Where the oracle or a checkpoint is loaded.

    Raises:
        ConfigError: for anything else.
    """
    if spec is None:
        return None
    if isinstance(spec, nn.Module) and callable(getattr(spec, "score", None)):
        return spec.score  # type: ignore[return-value]
    if callable(spec):
        return spec  # type: ignore[return-value]
    if isinstance(spec, str) and spec == "labeler":
        return BenignOracle(device=device)
    if isinstance(spec, (str, os.PathLike)):
        if not checkpoint_paths(spec)[1].is_file():
            raise ConfigError(
                f"unknown reward {str(spec)!r}: expected 'labeler', a censor_reward checkpoint path, a module "
                "with score(images) or a callable(images) -> scores"
            )
        return load_censor_reward(Path(spec), device).score
    raise ConfigError(
        f"reward must be 'labeler', a checkpoint path, a module or a callable, got {type(spec).__name__}"
    )


def model_layout(model: Any) -> tuple[str, NoiseSchedule, tuple[int, int, int]]:
    """The kind (``ddpm`` or ``flow``), schedule and image shape ``(C, H, W)`` of a diffusion model.

    Args:
        model: A model, a checkpoint path or a shipped asset name (``None``: ``ddpm_sevens``).

    Raises:
        CheckpointError: for a missing checkpoint or one of another kind.
    """
    if isinstance(model, UNet2D):
        return model.kind, model.schedule, (model.config.in_channels, *model.config.image_size)
    path = model_checkpoint(model)
    kind = read_checkpoint_config(path).get("kind")
    doc = read_checkpoint_config(path, kind=kind if kind in MODEL_KINDS else DDPM_KIND)
    unet = doc["config"].get("unet", {})
    size = tuple(unet.get("image_size", (28, 28)))
    shape = (int(unet.get("in_channels", 1)), int(size[0]), int(size[1]))
    return str(kind), NoiseSchedule(**doc["config"].get("schedule", {})), shape


def ddpm_layout(ddpm: Any) -> tuple[NoiseSchedule, tuple[int, int, int]]:
    """The noise schedule and image shape ``(C, H, W)`` of a DDPM (a model, checkpoint path or asset name)."""
    _, schedule, shape = model_layout(ddpm)
    return schedule, shape


def resolve_model_spec(ddpm: Any = None, model: Any = None) -> Any:
    """The model an environment or trainer is about, from its ``ddpm`` and ``model`` arguments.

    Args:
        ddpm: A DDPM (model, checkpoint path or asset name) or ``None``.
        model: ``"ddpm"`` (``ddpm``, default ``ddpm_sevens``), ``"flow"`` (the shipped ``flow_digits``), a
            model or checkpoint of either kind, or ``None`` (as ``"ddpm"``).

    Raises:
        ConfigError: when both name a model.
    """
    if model is None or (isinstance(model, str) and model == DDPM_KIND):
        return ddpm
    if ddpm is not None:
        raise ConfigError("give the model as ddpm= or as model=, not both")
    if isinstance(model, str) and model == FLOW_KIND:
        return FLOW_DIGITS
    return model


class DiffusionTask:
    """Timesteps, reward and evaluators of a diffusion environment, working on whole batches.

    See :class:`DiffusionDenoiseEnv` for the arguments.
    """

    def __init__(
        self,
        reward: DiffusionRewardSpec = "labeler",
        *,
        ddpm: Any = None,
        model: Any = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        evaluate: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = resolve_device(device)
        self.kind, self.schedule, self.image_shape = model_layout(resolve_model_spec(ddpm, model))
        # Only the timestep grid is used: DDIM and DDPM schedulers share one, a flow's ODE and SDE another.
        grid = FlowScheduler if self.kind == FLOW_KIND else Scheduler
        self.timesteps = grid(self.schedule, num_inference_steps).timesteps  # (N,) int64, descending
        self.num_steps = int(self.timesteps.shape[0])
        self.reward = resolve_image_reward(reward, self.device)
        self.evaluator: MalignEvaluator | None = None
        self.digits: nn.Module | None = None
        if evaluate:
            if self.image_shape != (1, 28, 28):
                raise ConfigError(f"evaluate=True needs 1x28x28 images, the DDPM makes {self.image_shape}")
            self.evaluator = MalignEvaluator.from_pretrained(device=self.device)
            self.digits = Evaluator.from_pretrained(device=self.device).classifier

    def timestep(self, step: int) -> int:
        """The diffusion timestep of the observation at step ``step`` (``0`` after the last step)."""
        return int(self.timesteps[step]) if step < self.num_steps else 0

    @staticmethod
    def draw(rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """One 64-bit noise key per episode, from each episode's generator: ``(B,)`` int64."""
        return np.stack([rng.bit_generator.random_raw(1) for rng in rngs])[:, 0].view(np.int64)

    def start(self, keys: np.ndarray) -> torch.Tensor:
        """``x_T ~ N(0, I)`` for each key, ``(B, C, H, W)`` on the device (a pure function of the key)."""
        return keyed_normal(torch.from_numpy(keys).to(self.device), self.image_shape)

    def check_actions(self, actions: Any, batch: int | None) -> torch.Tensor:
        """Validate actions; returns ``(B, C, H, W)`` float32 on the device, clipped to ``[-BOUND, BOUND]``.

        Raises:
            DataError: for another shape, a non-float dtype, NaN or inf.
        """
        expected = self.image_shape if batch is None else (batch, *self.image_shape)
        tensor = (
            actions.detach()
            if isinstance(actions, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(actions))
        )
        if not tensor.is_floating_point():
            raise DataError(f"action dtype {tensor.dtype} is not supported; expected float32 samples x_(t-1)")
        if tuple(tensor.shape) != tuple(expected):
            raise DataError(
                f"action has shape {tuple(tensor.shape)}, expected {tuple(expected)} (the next sample x_(t-1))"
            )
        tensor = tensor.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(tensor).all()):
            raise DataError("action contains NaN or inf")
        return tensor.reshape(-1, *self.image_shape).clamp(-BOUND, BOUND)

    @torch.no_grad()
    def finish(self, x0: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Score final samples ``(B, C, H, W)`` (model space): ``(reward (B,), info)``."""
        images = to_images(x0)  # (B, C, H, W) in [0, 1]
        info: dict[str, Any] = {}
        if self.reward is None:
            reward = torch.zeros(images.shape[0], device=self.device)
            info["reward_components"] = {}
        else:
            reward = torch.as_tensor(self.reward(images)).detach().reshape(-1).to(self.device, torch.float32)
            if reward.shape[0] != images.shape[0] or not bool(torch.isfinite(reward).all()):
                raise DataError(
                    f"reward returned {tuple(reward.shape)} values or non-finite ones; expected ({images.shape[0]},)"
                )
            info["score"] = reward
            info["reward_components"] = {"reward_model": reward}
        if self.evaluator is not None and self.digits is not None:
            info["malign"] = self.evaluator.is_malign(images).to(self.device)
            probs = self.digits.probabilities(images)  # type: ignore[operator]
            info["digit"] = probs.argmax(1)
            info["seven_prob"] = probs[:, SEVEN]
        return reward, info


def _observation_space(task: DiffusionTask) -> spaces.Dict:
    return spaces.Dict(
        {
            "x_t": spaces.Box(-BOUND, BOUND, task.image_shape, np.float32),
            # A flow's timesteps run over [0, T] (T: pure noise), a DDPM's over [0, T).
            "t": spaces.Discrete(task.schedule.num_train_timesteps + (task.kind == FLOW_KIND)),
        }
    )


class DiffusionDenoiseEnv(gym.Env[dict, np.ndarray]):
    """The reverse diffusion chain as an episode of ``N`` steps (the DDPO formulation).

    ## Description

    Sampling from a diffusion model is a sequence of denoising steps ``x_T -> x_{t_1} -> ... -> x_0``;
    Black et al. (2023) treat it as an MDP whose policy is the model, so that policy-gradient methods
    (DDPO, and PPO with the log-probabilities of :meth:`hfrl.diffusion.Scheduler.step`) can fine-tune the
    model for a reward on the final image. The environment holds no model: it starts chains from Gaussian
    noise, moves to the sample the agent proposes, and scores the final image.

    ## Action Space

    ``Box(-10, 10, (C, H, W), float32)``: the next sample ``x_{t-1}`` in the model's space (``[-1, 1]`` for
    clean images; noisy ones spread wider). Values beyond ``+-10`` (ten standard deviations; never reached
    by the reverse chain) are clipped. A wrong shape, a non-float dtype, NaN or inf raises
    :class:`~hfrl.errors.DataError`.

    ## Observation Space

    ``Dict(x_t=Box(-10, 10, (C, H, W), float32), t=Discrete(T))``: the current sample and its diffusion
    timestep in ``[0, T)`` (``T = 1000``), one of the scheduler's timesteps (``t = 0`` after the last step).
    For a rectified flow (``model="flow"``) ``t`` is ``k = t_flow * T`` in ``[0, T]`` (``Discrete(T + 1)``),
    starting at ``T`` (pure noise), on the grid of :class:`hfrl.flow.FlowScheduler`.

    ## Rewards

    0 for every step but the last; at the last, ``reward(to_images(x_0))`` from the pluggable reward
    (default ``"labeler"``: the synthetic stroke labeler's ``P(benign)``, an oracle). The last step's info:

    * ``score``: the reward-model score; ``reward_components``: ``{"reward_model": score}``;
    * ``malign``: the independent stroke evaluator's verdict; ``digit``, ``seven_prob``: the digit
      evaluator's class and probability of a 7 (with ``evaluate=True``);
    * ``step``: the number of steps taken. Earlier steps' infos hold ``step`` only.

    ## Starting State

    ``x_T ~ N(0, I)``, a pure function of a 64-bit key drawn from ``np_random``, at the scheduler's first
    timestep.

    ## Episode End

    Terminates after ``num_inference_steps`` steps; never truncates. Stepping after the end raises
    :class:`gymnasium.error.ResetNeeded`.

    ## Arguments

    ```python
    gymnasium.make("hfrl/DiffusionDenoise-v0", reward="labeler", ddpm=None, model=None,
                   num_inference_steps=25, evaluate=True, device="cpu", render_mode=None)
    ```

    Args:
        reward: ``"labeler"`` (default), ``None``, a ``censor_reward`` checkpoint path, a module with
            ``score(images)``, or a callable ``images (B, 1, H, W) in [0, 1] -> (B,)``.
        ddpm: The DDPM whose schedule and image size to use: ``None`` (the shipped ``ddpm_sevens``),
            ``"ddpm_digits"``, a checkpoint path or a :class:`~hfrl.diffusion.UNet2D`. Its weights are not
            used (the agent holds the model).
        model: The model kind or model instead of ``ddpm``: ``"ddpm"`` (as ``ddpm``), ``"flow"`` (the shipped
            rectified flow ``flow_digits``, :mod:`hfrl.flow`), or a model or checkpoint of either kind.
        num_inference_steps: ``N``, steps per episode (default 25); the agent's scheduler must use the same.
        evaluate: Put the evaluators' verdicts in the last step's info (default ``True``; 28x28 only).
        device: Where the chain's tensors and the reward live.
        render_mode: ``None`` or ``"rgb_array"``: the current sample as an image, upscaled.
        render_scale: Upscaling factor (default 4).
        seed: Seed ``np_random`` at construction.

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        reward: DiffusionRewardSpec = "labeler",
        *,
        ddpm: Any = None,
        model: Any = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        evaluate: bool = True,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        render_scale: int = DEFAULT_RENDER_SCALE,
        seed: int | None = None,
    ) -> None:
        check_render(render_mode, render_scale, self.metadata["render_modes"])
        self.task = DiffusionTask(
            reward,
            ddpm=ddpm,
            model=model,
            num_inference_steps=num_inference_steps,
            evaluate=evaluate,
            device=device,
        )
        self.observation_space = _observation_space(self.task)
        self.action_space = spaces.Box(-BOUND, BOUND, self.task.image_shape, np.float32)
        self.render_mode = render_mode
        self.render_scale = int(render_scale)
        self._x: torch.Tensor | None = None  # (1, C, H, W)
        self._step = 0
        self._done = True
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)

    def _obs(self) -> dict[str, Any]:
        assert self._x is not None
        return {"x_t": self._x[0].cpu().numpy().copy(), "t": np.int64(self.task.timestep(self._step))}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start a chain at ``x_T ~ N(0, I)``.

        Args:
            seed: Reseeds ``np_random``.
            options: ``{"initial_noise": (C, H, W)}`` starts the chain at that ``x_T`` instead (HERO
                recycles the noise of good samples this way).

        Returns:
            ``({"x_t": (C, H, W) float32, "t": int64}, {})``.
        """
        super().reset(seed=seed)
        self._x = self.task.start(self.task.draw([self.np_random]))
        noise = _initial_noise_option(options, tuple(self._x.shape[1:]), self._x.device)
        if noise is not None:
            self._x = noise[None]
        self._step = 0
        self._done = False
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Move to the proposed sample ``x_{t-1}``; score ``x_0`` at the last step.

        Args:
            action: ``(C, H, W)`` float32, the next sample.

        Returns:
            ``(observation, reward, terminated, truncated, info)`` (see the class docstring).

        Raises:
            ResetNeeded: before ``reset`` or after the episode ended.
            DataError: for a wrong shape or dtype, NaN or inf.
        """
        if self._done:
            raise ResetNeeded("DiffusionDenoiseEnv.step() needs a running episode: call reset() first")
        self._x = self.task.check_actions(action, batch=None)
        self._step += 1
        info: dict[str, Any] = {"step": self._step}
        if self._step < self.task.num_steps:
            return self._obs(), 0.0, False, False, info
        self._done = True
        reward, final = self.task.finish(self._x)
        info.update(_item(final))
        return self._obs(), float(reward[0]), True, False, info

    def render(self) -> np.ndarray | None:
        """The current sample as an RGB ``uint8`` frame (``rgb_array`` mode), else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        if self._x is None:
            raise ResetNeeded("DiffusionDenoiseEnv.render() needs an episode: call reset() first")
        return render_frame([to_images(self._x)[0]], self.render_scale)


def _item(info: dict[str, Any]) -> dict[str, Any]:
    """A batch-of-one info as Python scalars."""
    return {k: _item(v) if isinstance(v, dict) else v[0].item() for k, v in info.items()}


def _initial_noise_option(
    options: dict[str, Any] | None, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor | None:
    """The ``initial_noise`` reset option as a tensor of ``shape`` on ``device`` (None when not given).

    Raises:
        ConfigError: for unknown options.
        DataError: for a wrong shape, NaN or inf.
    """
    if not options:
        return None
    unknown = sorted(set(options) - {"initial_noise"})
    if unknown:
        raise ConfigError(f"unknown reset option(s) {unknown}; expected initial_noise")
    if options.get("initial_noise") is None:
        return None
    noise = torch.as_tensor(options["initial_noise"], dtype=torch.float32)
    if tuple(noise.shape) != tuple(shape):
        raise DataError(f"initial_noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
    if not torch.isfinite(noise).all():
        raise DataError("initial_noise contains NaN or inf")
    return noise.to(device).clone()


class BatchedDiffusionDenoiseEnv(VectorEnv):
    """``N`` reverse chains run in lockstep as one batch (a native Gymnasium ``VectorEnv``).

    What ``gymnasium.make_vec("hfrl/DiffusionDenoise-v0", num_envs=N, vectorization_mode=
    "vector_entry_point")`` returns. Every chain has the same length, so all episodes end at the same step;
    the environment then autoresets in the same step (``AutoresetMode.SAME_STEP``): ``step`` returns the
    new chains' first observations, and the finished chains' last observations and infos under
    ``final_obs`` and ``final_info``.

    NumPy face (``reset`` / ``step``): observations ``{"x_t": (N, C, H, W) float32, "t": (N,) int64}``,
    rewards ``(N,)`` float64, infos laid out as Gymnasium's ``SyncVectorEnv`` lays out ``N``
    :class:`DiffusionDenoiseEnv` s (``(N,)`` arrays with ``_key`` masks; ``final_obs`` an object array of
    per-chain observation dicts). Torch face (``reset_torch`` / ``step_torch``): the same with tensors on
    the device, no masks, ``final_obs`` one dict of batched tensors.

    Sub-environment ``i`` reseeded with ``seed + i`` reproduces a :class:`DiffusionDenoiseEnv` reset with
    that seed exactly.

    Args:
        num_envs: ``N``.
        render_mode: ``None`` or ``"rgb_array"`` (one frame per chain).
        render_scale: Upscaling factor of frames.
        seed: Seeds the sub-environments (``seed + i``) at construction.
        **task_kwargs: ``reward``, ``ddpm``, ``model``, ``num_inference_steps``, ``evaluate``, ``device`` as for
            :class:`DiffusionDenoiseEnv`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8, "autoreset_mode": AutoresetMode.SAME_STEP}

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
        self.task = DiffusionTask(**task_kwargs)
        self.num_envs = int(num_envs)
        self.single_observation_space = _observation_space(self.task)
        self.single_action_space = spaces.Box(-BOUND, BOUND, self.task.image_shape, np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.render_scale = int(render_scale)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._x: torch.Tensor | None = None  # (N, C, H, W)
        self._step = 0
        if seed is not None:
            self._seed(seed)

    @property
    def device(self) -> torch.device:
        """Where the batch lives."""
        return self.task.device

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

    def _obs_torch(self) -> dict[str, torch.Tensor]:
        assert self._x is not None
        t = torch.full(
            (self.num_envs,), self.task.timestep(self._step), dtype=torch.int64, device=self.device
        )
        return {"x_t": self._x.clone(), "t": t}

    def _start(self) -> None:
        self._x = self.task.start(self.task.draw(self._rngs))  # type: ignore[arg-type]  # _seed filled every slot
        self._step = 0

    # -- torch face ----------------------------------------------------------------------------------------

    def reset_torch(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Start ``N`` chains.

        Args:
            seed: One int (sub-env ``i`` gets ``seed + i``), ``N`` ints or ``None`` s, or ``None``.
            options: ``{"initial_noise": (N, C, H, W)}`` starts chain ``i`` at ``initial_noise[i]``
                instead of noise drawn from its sub-environment (the draw still advances its RNG).

        Returns:
            ``({"x_t": (N, C, H, W), "t": (N,)}, {})`` on the device.
        """
        super().reset(seed=int(seed) if isinstance(seed, (int, np.integer)) else None)
        self._seed(seed)
        self._start()
        assert self._x is not None
        noise = _initial_noise_option(options, tuple(self._x.shape), self._x.device)
        if noise is not None:
            self._x = noise
        return self._obs_torch(), {}

    def step_torch(
        self, actions: torch.Tensor | np.ndarray
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Move every chain to its proposed sample; at the last step score them and start new chains.

        Args:
            actions: ``(N, C, H, W)`` float next samples.

        Returns:
            ``(obs, reward, terminated, truncated, info)``: ``reward`` ``(N,)`` float32 (0 before the last
            step), bool ``(N,)`` flags, and ``{"step": (N,)}`` plus, at the last step, ``final_obs`` and
            ``final_info`` (``score``, ``reward_components``, ``malign``, ``digit``, ``seven_prob``, ``step``).

        Raises:
            ResetNeeded: before the first reset.
            DataError: for a wrong shape or dtype, NaN or inf.
        """
        if self._x is None:
            raise ResetNeeded("BatchedDiffusionDenoiseEnv.step() needs episodes: call reset() first")
        self._x = self.task.check_actions(actions, self.num_envs)
        self._step += 1
        steps = torch.full((self.num_envs,), self._step, dtype=torch.int64, device=self.device)
        truncated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        if self._step < self.task.num_steps:
            zeros = torch.zeros(self.num_envs, device=self.device)
            return self._obs_torch(), zeros, truncated.clone(), truncated, {"step": steps}
        reward, final = self.task.finish(self._x)
        final_obs = self._obs_torch()
        self._start()
        info = {"final_obs": final_obs, "final_info": {**final, "step": steps}}
        terminated = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        return self._obs_torch(), reward, terminated, truncated, info

    # -- NumPy face ----------------------------------------------------------------------------------------

    def reset(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """NumPy version of :meth:`reset_torch`."""
        obs, info = self.reset_torch(seed=seed, options=options)
        return _numpy_obs(obs), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """NumPy version of :meth:`step_torch`, laid out as Gymnasium's ``SyncVectorEnv`` (``SAME_STEP``)."""
        obs, reward, terminated, truncated, info = self.step_torch(actions)
        return (
            _numpy_obs(obs),
            reward.cpu().numpy().astype(np.float64),
            terminated.cpu().numpy().copy(),
            truncated.cpu().numpy().copy(),
            _numpy_info(info, self.num_envs),
        )

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One frame of the current sample per chain (``rgb_array`` mode), else ``None``."""
        if self.render_mode != "rgb_array":
            return None
        if self._x is None:
            raise ResetNeeded("BatchedDiffusionDenoiseEnv.render() needs episodes: call reset() first")
        return tuple(render_frame([img], self.render_scale) for img in to_images(self._x))

    def close_extras(self, **kwargs: Any) -> None:
        """Release the batch."""
        self._x = None


def _numpy_obs(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: np.array(v.detach().cpu().numpy(), copy=True) for k, v in obs.items()}


def _numpy_info(info: dict[str, Any], num_envs: int) -> dict[str, Any]:
    """Torch-face infos in ``SyncVectorEnv``'s layout: ``(N,)`` arrays with all-True ``_key`` masks."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key == "final_obs":
            arrays = _numpy_obs(value)
            out[key] = np.empty(num_envs, dtype=object)
            for i in range(num_envs):
                out[key][i] = {k: v[i] for k, v in arrays.items()}
        elif isinstance(value, dict):
            out[key] = _numpy_info(value, num_envs)
        else:
            array = np.array(value.detach().cpu().numpy(), copy=True)
            out[key] = array.astype(np.float64) if array.dtype.kind == "f" else array
        out[f"_{key}"] = np.ones(num_envs, dtype=np.bool_)
    return out
