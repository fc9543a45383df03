"""Rectified flow on the digits: a velocity-predicting U-Net, its matching loss, and its ODE and SDE samplers.

The second model kind beside the DDPM of :mod:`hfrl.diffusion`, shipped the same way, so that every online
fine-tuning method (:mod:`hfrl.agents.diffusion`) runs on both:

* **The path.** ``x_t = (1 - t) x0 + t eps`` with ``t`` in ``[0, 1]``: ``t = 0`` is the clean sample and
  ``t = 1`` pure noise (rectified flow, Liu et al. 2022, arXiv 2209.03003; flow matching with the linear
  path, Lipman et al. 2022, arXiv 2210.02747; the convention of Stable Diffusion 3 and Flow-GRPO).
* **The model.** :class:`FlowUNet2D` is :class:`~hfrl.diffusion.UNet2D` predicting the velocity
  ``v = eps - x0`` (the path's time derivative). Its ``kind`` is ``"flow"``, and so is its checkpoint's.
* **Timesteps.** The network is fed ``t`` scaled to the DDPM's timestep range, ``k = t * T`` with
  ``T = model.schedule.num_train_timesteps`` (1000; the schedule's betas are unused), so it shares the
  DDPM's sinusoidal embedding, and a sampler's timesteps are integers as for the DDPM: the environment and
  the trainers pass them around unchanged. ``k`` runs over ``[0, T]`` (``T`` itself is the starting noise).
* **The samplers.** :class:`FlowScheduler` has the step contract of :class:`~hfrl.diffusion.DDIMScheduler`
  (:meth:`~hfrl.diffusion.Scheduler.step` returns a :class:`~hfrl.diffusion.SchedulerStepOutput` with the
  step's Gaussian and log-probability): ``noise_level = 0`` is the deterministic Euler step of the ODE
  ``dx = v dt`` (``std = 0``, log-probability ``NaN``, like DDIM with ``eta = 0``), ``noise_level = a > 0``
  Flow-GRPO's SDE with the same marginals (Liu et al. 2025, arXiv 2505.05470, eqs. 8-9)::

      dx = [v + sigma_t^2 / (2t) (x + (1 - t) v)] dt + sigma_t dw,    sigma_t = a sqrt(t / (1 - t))

  discretised as one Gaussian per step (``dt < 0``: time runs from 1 to 0)::

      x_prev ~ N(x + [v + sigma_t^2 / (2t) (x + (1 - t) v)] dt,  sigma_t^2 |dt| I)

Training (:func:`train_flow`, the loop of :func:`~hfrl.diffusion.train_ddpm`) minimises
:func:`flow_matching_loss`, ``||v_theta(x_t, t) - (eps - x0)||^2`` at uniform ``t``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from hfrl.diffusion import (
    DEFAULT_INFERENCE_STEPS,
    DDPMTrainConfig,
    NoiseSchedule,
    Scheduler,
    UNet2D,
    UNetConfig,
    train_ddpm,
)
from hfrl.errors import ConfigError

FLOW_KIND = "flow"
"""Model and checkpoint kind of :class:`FlowUNet2D`."""
FLOW_DIGITS = "flow_digits"
"""Shipped rectified-flow model trained on all 5,000 embedded digits (``scripts/make_assets.py --only
flow-digits``), the flow counterpart of ``ddpm_digits``."""
FLOW_SDE_NOISE_LEVEL = 0.7
"""Flow-GRPO's ``a`` in ``sigma_t = a sqrt(t / (1 - t))`` (their default for Stable Diffusion 3.5)."""


class FlowUNet2D(UNet2D):
    """Velocity predictor ``v_theta(x_t, k)`` of a rectified flow: :class:`~hfrl.diffusion.UNet2D` as is.

    ``forward(x, timesteps)`` takes ``(B, C, H, W)`` samples ``x_t`` in model space and timesteps
    ``k = t * T`` (``(B,)`` or one number, fractional allowed) and returns the predicted velocity
    ``eps - x0``, ``(B, C, H, W)``.

    Args:
        config: The architecture.
        schedule: Only its ``num_train_timesteps`` (``T``) is used: the scale of the timestep fed to the
            network.
    """

    kind: ClassVar[str] = FLOW_KIND


def build_flow(config: dict[str, Any]) -> FlowUNet2D:
    """Build an untrained :class:`FlowUNet2D` from a checkpoint config (the ``flow`` checkpoint kind).

    Args:
        config: ``{"unet": UNetConfig fields, "schedule": NoiseSchedule fields}``, as for a DDPM.
    """
    unknown = set(config) - {"unet", "schedule"}
    if unknown:
        raise ValueError(f"unknown flow model config keys {sorted(unknown)}")
    return FlowUNet2D(UNetConfig(**config.get("unet", {})), NoiseSchedule(**config.get("schedule", {})))


def flow_time(timesteps: torch.Tensor | float, num_train_timesteps: int) -> torch.Tensor:
    """Flow time ``t = k / T`` in ``[0, 1]`` of model timesteps ``k`` (float64 tensor, same shape)."""
    return torch.as_tensor(timesteps, dtype=torch.float64) / float(num_train_timesteps)


def flow_matching_loss(model: UNet2D, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Per-sample flow-matching loss ``mean_pixels (v_theta(x_t, t) - (noise - x0))^2``.

    Args:
        model: A velocity predictor (:class:`FlowUNet2D`).
        x0: ``(B, C, H, W)`` clean samples in model space (``[-1, 1]``).
        t: ``(B,)`` flow times in ``[0, 1]`` (1 = noise).
        noise: ``(B, C, H, W)`` standard normal noise.

    Returns:
        ``(B,)`` losses (differentiable in the model's weights).
    """
    t = torch.as_tensor(t, device=x0.device).to(x0.dtype).reshape(-1).expand(x0.shape[0])
    tt = t.view(-1, 1, 1, 1)
    x_t = (1.0 - tt) * x0 + tt * noise  # (B, C, H, W)
    pred = model(x_t, t * model.schedule.num_train_timesteps)  # (B, C, H, W)
    return ((pred - (noise - x0)) ** 2).flatten(1).mean(1)


class FlowScheduler(Scheduler):
    """Euler steps of a rectified flow: the ODE (``noise_level = 0``) or Flow-GRPO's SDE (``> 0``).

    See the module docstring for the step. ``N`` inference steps visit ``k_i = round(T (N - i) / N)``,
    ``i = 0 .. N - 1`` (flow times ``1, 1 - 1/N, ..., 1/N``), and the step from the last lands on ``t = 0``.
    Flow-GRPO's ``sigma_t`` is infinite at ``t = 1``; as in their code, ``1 - t`` is floored at the step
    size ``|dt|`` (for ``t = 1`` the next grid time stands in for ``t``), which leaves every other step as is.

    Args:
        schedule: The model's schedule (``model.schedule``); only ``T`` is used.
        num_inference_steps: ``N`` (default 25), at most ``T``.
        noise_level: Flow-GRPO's ``a`` (0: the deterministic ODE; 0.7 is theirs).
    """

    def __init__(
        self,
        schedule: NoiseSchedule | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        noise_level: float = 0.0,
    ) -> None:
        if not float(noise_level) >= 0.0:
            raise ConfigError(f"flow noise_level must be >= 0, got {noise_level}")
        self.noise_level = float(noise_level)
        super().__init__(schedule, num_inference_steps, clip_sample=False)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose ``N`` inference steps: ``timesteps = [T, ..., round(T / N)]``, evenly spaced in ``t``."""
        total = self.schedule.num_train_timesteps
        if not 1 <= int(num_inference_steps) <= total:
            raise ConfigError(f"num_inference_steps must be in [1, {total}], got {num_inference_steps}")
        n = int(num_inference_steps)
        self.num_inference_steps = n
        self.step_ratio = total // n
        grid = torch.arange(n, 0, -1, dtype=torch.float64) * total / n
        self.timesteps = grid.round().long()  # (N,) int64, descending, first = T

    def previous_timestep(self, timestep: torch.Tensor | int) -> torch.Tensor:
        """The timestep a step from ``timestep`` lands on: the next one of :attr:`timesteps`, or 0 after the last."""
        t = torch.as_tensor(timestep).to("cpu")
        ascending = self.timesteps.flip(0)  # (N,)
        idx = torch.searchsorted(ascending, t.long().reshape(-1))
        prev = torch.where(idx > 0, ascending[(idx - 1).clamp(min=0)], torch.zeros_like(idx))
        return prev.reshape(t.shape)

    def _time(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Flow time ``t`` as ``(B, 1, 1, 1)`` in ``like``'s dtype and device."""
        t = flow_time(
            timesteps.to("cpu").reshape(-1).expand(like.shape[0]), self.schedule.num_train_timesteps
        )
        return t.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

    def alpha_bar(self, timestep: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """Not defined for a flow (guidance written for the DDPM's ``abar_t`` needs a DDPM)."""
        raise ConfigError("alpha_bar is a DDPM quantity; this sampler is a rectified flow's")

    def predict_original(
        self, model_output: torch.Tensor, timestep: torch.Tensor | int, sample: torch.Tensor
    ) -> torch.Tensor:
        """``x0_hat = x_t - t v`` (the path solved for ``x0`` with the predicted velocity).

        Args:
            model_output: ``(B, C, H, W)`` predicted velocity.
            timestep: ``(B,)`` or one number (``k = t * T``).
            sample: ``(B, C, H, W)`` ``x_t``.
        """
        return sample - self._time(torch.as_tensor(timestep), sample) * model_output

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self._time(timestep, sample)  # (B, 1, 1, 1)
        dt = self._time(self.previous_timestep(timestep), sample) - t  # (B, 1, 1, 1), negative
        v = model_output
        x0 = sample - t * v
        if self.noise_level == 0.0:
            return sample + v * dt, torch.zeros_like(t).reshape(-1), x0
        sigma = self.noise_level * (t / (1.0 - t).clamp(min=-dt)).sqrt()  # (B, 1, 1, 1)
        drift = v + sigma**2 / (2.0 * t) * (sample + (1.0 - t) * v)
        mean = sample + drift * dt
        return mean, (sigma * (-dt).sqrt()).reshape(-1), x0

    def __repr__(self) -> str:
        return (
            f"FlowScheduler(num_inference_steps={self.num_inference_steps}, noise_level={self.noise_level})"
        )


def train_flow(
    images: torch.Tensor,
    model: FlowUNet2D,
    config: DDPMTrainConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    log_every: int = 100,
    on_checkpoint: Callable[[int, UNet2D], None] | None = None,
    checkpoint_every: int = 1000,
) -> FlowUNet2D:
    """Train a velocity predictor on ``images`` with :func:`flow_matching_loss` at uniform ``t`` in ``(0, 1]``.

    The loop, optimiser, EMA and augmentation of :func:`~hfrl.diffusion.train_ddpm` (which trains a model of
    either kind by its ``kind``); the arguments are the same.

    Returns:
        The EMA weights as a new :class:`FlowUNet2D` in eval mode on ``device``.

    Raises:
        ConfigError: when ``model`` is not a flow model.
    """
    if getattr(model, "kind", None) != FLOW_KIND:
        raise ConfigError(
            f"train_flow needs a FlowUNet2D, got a {getattr(model, 'kind', type(model).__name__)!r} model"
        )
    ema = train_ddpm(
        images, model, config, device=device, log=log, log_every=log_every,
        on_checkpoint=on_checkpoint, checkpoint_every=checkpoint_every,
    )  # fmt: skip
    return ema  # type: ignore[return-value]


__all__ = [
    "FLOW_DIGITS",
    "FLOW_KIND",
    "FLOW_SDE_NOISE_LEVEL",
    "FlowScheduler",
    "FlowUNet2D",
    "build_flow",
    "flow_matching_loss",
    "flow_time",
    "train_flow",
]
