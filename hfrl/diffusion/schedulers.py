"""Reverse-chain steps with log-probabilities (DDPM, DDIM; flows in :mod:`hfrl.flow`) and the sampler (see :mod:`hfrl.diffusion`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hfrl.diffusion.models import DDPM_KIND, DEFAULT_INFERENCE_STEPS, NoiseSchedule, UNet2D, to_images
from hfrl.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Schedulers

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class SchedulerStepOutput:
    """One reverse step ``x_t -> x_prev`` as a Gaussian ``N(mean, std^2 I)``.

    Attributes:
        prev_sample: ``(B, C, H, W)`` the sample drawn (or the ``prev_sample`` passed in to be scored).
        pred_original_sample: ``(B, C, H, W)`` the model's estimate of the clean sample ``x_0``.
        log_prob: ``(B,)`` log-density of ``prev_sample`` under the step's Gaussian, summed over pixels;
            ``NaN`` where the step is deterministic (``std == 0``, e.g. DDIM with ``eta = 0``).
        mean: ``(B, C, H, W)`` mean of the step's Gaussian.
        std: ``(B,)`` its standard deviation (isotropic).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``x`` under ``N(mean, std^2 I)``, summed over every non-batch dimension.

    Args:
        x: ``(B, ...)`` samples.
        mean: ``(B, ...)`` means.
        std: ``(B,)`` standard deviations; ``NaN`` is returned where ``std == 0``.

    Returns:
        ``(B,)`` log-probabilities.
    """
    s = std.reshape(-1, *([1] * (x.ndim - 1)))
    safe = s.clamp(min=1e-20)
    per_pixel = -0.5 * ((x - mean) / safe) ** 2 - safe.log() - _HALF_LOG_2PI
    out = per_pixel.flatten(1).sum(1)  # (B,)
    return torch.where(std.reshape(-1) > 0, out, torch.full_like(out, float("nan")))


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Scheduler:
    """What DDPM and DDIM share: the inference timesteps and the cumulative alphas.

    Args:
        schedule: The forward process the model was trained with (``model.schedule``).
        num_inference_steps: ``N``, the reverse steps of one sampling run (default 25); at most ``T``.
        clip_sample: Clamp the predicted clean sample to ``[-1, 1]`` (default ``True``).
    """

    def __init__(
        self,
        schedule: NoiseSchedule | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        clip_sample: bool = True,
    ) -> None:
        self.schedule = schedule or NoiseSchedule()
        self.alphas_cumprod = self.schedule.alphas_cumprod()  # (T,) float64
        self.final_alpha_cumprod = float(self.alphas_cumprod[0])
        self.clip_sample = bool(clip_sample)
        self.set_timesteps(num_inference_steps)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose ``N`` inference steps: ``timesteps = [(N - 1) r + 1, ..., r + 1, 1]`` with ``r = T // N``.

        With ``N = T`` (every training timestep) the offset is 0 (``[T - 1, ..., 0]``) and the last step, from
        ``t = 0``, is deterministic (``std = 0``), as in Ho et al.'s sampler.
        """
        total = self.schedule.num_train_timesteps
        if not 1 <= int(num_inference_steps) <= total:
            raise ConfigError(f"num_inference_steps must be in [1, {total}], got {num_inference_steps}")
        self.num_inference_steps = int(num_inference_steps)
        self.step_ratio = total // self.num_inference_steps
        offset = min(1, total - 1 - (self.num_inference_steps - 1) * self.step_ratio)
        self.timesteps = (
            torch.arange(self.num_inference_steps - 1, -1, -1) * self.step_ratio + offset
        )  # (N,) int64

    def previous_timestep(self, timestep: torch.Tensor | int) -> torch.Tensor:
        """The timestep a step from ``timestep`` lands on (negative: the final, ``abar_0`` level)."""
        return torch.as_tensor(timestep) - self.step_ratio

    def _abar(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` as ``(B, 1, 1, 1)`` in ``like``'s dtype; negative ``t`` maps to ``abar_0``."""
        t = timesteps.to("cpu").long().reshape(-1).expand(like.shape[0])
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], self.final_alpha_cumprod)
        return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

    def alpha_bar(self, timestep: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` as ``(B, 1, 1, 1)`` for a batch shaped like ``like`` (helper for guidance)."""
        return self._abar(torch.as_tensor(timestep), like)

    def predict_original(
        self, model_output: torch.Tensor, timestep: torch.Tensor | int, sample: torch.Tensor
    ) -> torch.Tensor:
        """``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (Ho et al. eq. 15), unclipped.

        Args:
            model_output: ``(B, C, H, W)`` predicted noise.
            timestep: ``(B,)`` or one int.
            sample: ``(B, C, H, W)`` ``x_t``.
        """
        abar = self._abar(torch.as_tensor(timestep), sample)
        return (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, std, x0_hat)`` of the step; subclasses implement it."""
        raise NotImplementedError

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        prev_sample: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> SchedulerStepOutput:
        """One reverse step from ``x_t``.

        Args:
            model_output: ``(B, C, H, W)`` predicted noise ``eps_theta(x_t, t)``.
            timestep: ``t``, one int or ``(B,)`` (one of :attr:`timesteps`).
            sample: ``(B, C, H, W)`` ``x_t``.
            generator: Randomness of the draw (ignored when ``prev_sample`` or ``noise`` is given).
            prev_sample: ``(B, C, H, W)``: score this sample instead of drawing one (e.g. the action an agent
                took, to recompute its log-probability under updated weights).
            noise: ``(B, C, H, W)`` standard normal draw to use instead of drawing one from ``generator``
                (``prev_sample = mean + std * noise``).

        Returns:
            A :class:`SchedulerStepOutput`.
        """
        t = torch.as_tensor(timestep)
        mean, std, x0 = self._moments(model_output, t, sample)
        std_b = std.reshape(-1).expand(sample.shape[0])  # (B,)
        if prev_sample is None:
            z = noise.to(sample) if noise is not None else _randn_like(sample, generator)
            prev_sample = mean + std_b.view(-1, 1, 1, 1) * z
        log_prob = gaussian_log_prob(prev_sample, mean, std_b)
        return SchedulerStepOutput(prev_sample, x0, log_prob, mean, std_b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_inference_steps={self.num_inference_steps}, T={self.schedule.num_train_timesteps})"


class DDPMScheduler(Scheduler):
    """Ancestral sampling with the DDPM posterior ``q(x_prev | x_t, x0_hat)`` (Ho et al. 2020, eqs. 6-7).

    With fewer inference steps than training steps the posterior is that of the respaced chain
    (Nichol & Dhariwal 2021): ``beta' = 1 - abar_t / abar_prev``,
    ``mean = sqrt(abar_prev) beta' / (1 - abar_t) x0_hat + sqrt(1 - beta') (1 - abar_prev) / (1 - abar_t) x_t``,
    ``var = beta' (1 - abar_prev) / (1 - abar_t)`` (the "fixed small" variance).

    Args:
        schedule: The forward process (``model.schedule``).
        num_inference_steps: Reverse steps (default 25; ancestral sampling needs more for the same quality
            as DDIM, e.g. 100 or all 1000).
        clip_sample: Clamp ``x0_hat`` to ``[-1, 1]``.
    """

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        abar_t = self._abar(timestep, sample)
        abar_prev = self._abar(self.previous_timestep(timestep), sample)
        x0 = self.predict_original(model_output, timestep, sample)
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        beta = 1 - abar_t / abar_prev
        mean = (abar_prev.sqrt() * beta / (1 - abar_t)) * x0 + (
            (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar_t)
        ) * sample
        var = beta * (1 - abar_prev) / (1 - abar_t)
        return mean, var.clamp(min=0).sqrt().reshape(-1), x0


class DDIMScheduler(Scheduler):
    """The DDIM step (Song et al. 2021, eq. 12) with stochasticity ``eta``.

    ``x0_hat`` as in DDPM (clipped, and ``eps`` recomputed from the clipped ``x0_hat`` so the two agree);
    ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)``;
    ``mean = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps``. ``eta = 0`` is deterministic
    (no log-probability); ``eta = 1`` has DDPM's variance; DDPO uses ``eta = 1``.

    Args:
        schedule: The forward process (``model.schedule``).
        num_inference_steps: Reverse steps (default 25).
        eta: Stochasticity in ``[0, 1]`` (default 0).
        clip_sample: Clamp ``x0_hat`` to ``[-1, 1]``.
    """

    def __init__(
        self,
        schedule: NoiseSchedule | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        eta: float = 0.0,
        clip_sample: bool = True,
    ) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"DDIM eta must be in [0, 1], got {eta}")
        self.eta = float(eta)
        super().__init__(schedule, num_inference_steps, clip_sample)

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        abar_t = self._abar(timestep, sample)
        abar_prev = self._abar(self.previous_timestep(timestep), sample)
        x0 = self.predict_original(model_output, timestep, sample)
        eps = model_output
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (sample - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
        var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
        std = self.eta * var.clamp(min=0).sqrt()  # (B, 1, 1, 1)
        mean = abar_prev.sqrt() * x0 + (1 - abar_prev - std**2).clamp(min=0).sqrt() * eps
        return mean, std.reshape(-1), x0

    def __repr__(self) -> str:
        return f"DDIMScheduler(num_inference_steps={self.num_inference_steps}, eta={self.eta})"


SCHEDULERS = ("ddim", "ddpm", "flow-ode", "flow-sde")
FLOW_SCHEDULERS = ("flow-ode", "flow-sde")
"""The samplers of a rectified flow (:class:`hfrl.flow.FlowScheduler`); the others are a DDPM's."""


def make_scheduler(
    name: str = "ddim",
    schedule: NoiseSchedule | None = None,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    eta: float = 0.0,
    noise_level: float | None = None,
) -> Scheduler:
    """A scheduler by name.

    ``"ddim"`` (with ``eta``) or ``"ddpm"`` for a DDPM; ``"flow-ode"`` (Euler) or ``"flow-sde"`` (Flow-GRPO's
    SDE with ``noise_level``, default 0.7) for a rectified flow (:class:`hfrl.flow.FlowScheduler`).
    """
    if name == "ddim":
        return DDIMScheduler(schedule, num_inference_steps, eta=eta)
    if name == "ddpm":
        return DDPMScheduler(schedule, num_inference_steps)
    if name in FLOW_SCHEDULERS:
        from hfrl.flow import FLOW_SDE_NOISE_LEVEL, FlowScheduler

        level = 0.0 if name == "flow-ode" else (FLOW_SDE_NOISE_LEVEL if noise_level is None else noise_level)
        return FlowScheduler(schedule, num_inference_steps, noise_level=level)
    raise ConfigError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def model_scheduler(
    model: UNet2D,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    *,
    stochastic: bool = False,
    eta: float = 1.0,
    noise_level: float | None = None,
) -> Scheduler:
    """The sampler that fits ``model``'s kind: DDIM for a DDPM, Euler steps for a rectified flow.

    Args:
        model: A DDPM or flow model (its ``kind`` and ``schedule``).
        num_inference_steps: Reverse steps.
        stochastic: Gaussian steps with log-probabilities (DDIM with ``eta``; Flow-GRPO's SDE with
            ``noise_level``) instead of deterministic ones (DDIM ``eta = 0``; the flow's ODE).
        eta: DDIM stochasticity when ``stochastic``.
        noise_level: Flow-GRPO's ``a`` when ``stochastic`` (default 0.7).
    """
    if getattr(model, "kind", DDPM_KIND) == DDPM_KIND:
        return make_scheduler("ddim", model.schedule, num_inference_steps, eta=eta if stochastic else 0.0)
    name = "flow-sde" if stochastic else "flow-ode"
    return make_scheduler(name, model.schedule, num_inference_steps, noise_level=noise_level)


# ---------------------------------------------------------------------------------------------------------
# Sampling


def initial_noise(
    num: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``x_T ~ N(0, I)`` of shape ``(num, *shape)`` drawn from ``generator`` (on its device), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn((num, *shape), generator=generator, device=gen_device).to(device)


@torch.no_grad()
def sample(
    model: UNet2D,
    scheduler: Scheduler,
    num: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw ``num`` images with the reverse chain (the pipeline of the module docstring).

    The randomness is drawn for the whole set, never per batch: first the initial noise of all ``num``
    samples, then at each step of the chain one standard normal draw for all ``num`` (stochastic schedulers,
    e.g. DDIM with ``eta > 0`` or DDPM), of which each batch takes its rows. So the images do not depend on
    ``batch_size`` (up to the float rounding of batched forward passes); same ``generator`` seed, same images.
    They do depend on ``num``: the first ``k`` of ``num`` samples are not the ``k`` samples of ``num = k``
    when the scheduler is stochastic.

    Args:
        model: The noise predictor (its device is used).
        scheduler: A :class:`DDIMScheduler` or :class:`DDPMScheduler`.
        num: Number of images.
        generator: Randomness of ``x_T`` and of the stochastic steps.
        batch_size: Images denoised at once (default 500).
        progress: Called as ``progress(done, total)`` after each step of the chain (``total`` steps).

    Returns:
        ``(num, C, H, W)`` float32 images in ``[0, 1]`` on the CPU.
    """
    device = next(model.parameters()).device
    shape = (model.config.in_channels, *model.config.image_size)
    x = initial_noise(num, shape, generator, "cpu").to(device)  # (num, C, H, W), the whole set
    draw_device = generator.device if generator is not None else device
    total = len(scheduler.timesteps)
    for done, t in enumerate(scheduler.timesteps.tolist(), start=1):
        z = torch.randn(x.shape, generator=generator, device=draw_device, dtype=x.dtype).to(device)
        for rows in torch.arange(num).split(batch_size):
            chunk = x[rows]
            x[rows] = scheduler.step(model(chunk, int(t)), int(t), chunk, noise=z[rows]).prev_sample
        if progress is not None:
            progress(done, total)
    return to_images(x).cpu()
