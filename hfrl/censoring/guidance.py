"""Censored sampling, guidance at sampling time (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hfrl.censoring.reward import RewardLike
from hfrl.diffusion import (
    Scheduler,
    UNet2D,
    initial_noise,
    to_images,
)
from hfrl.errors import ConfigError


@dataclass(frozen=True)
class GuidanceConfig:
    """Reward guidance of one sampling run; every term has its own weight and 0 turns it off.

    Attributes:
        classifier_weight: ``w`` of classifier guidance on ``x_t`` (needs a time-dependent reward):
            ``eps <- eps - w sqrt(1 - abar_t) grad_{x_t} log r(x_t, t)``. The paper's MNIST setting: 1.0
            for a 5-member ensemble, 5.0 for a single model.
        forward_weight: ``w`` of forward (universal) guidance on the predicted clean image:
            ``eps <- eps - w sqrt(1 - abar_t) grad_{x_t} log r(x0_hat(x_t))``; back-propagates through the
            noise predictor (about three times the cost of a plain step).
        backward_steps: ``m``, Adam steps of backward guidance on ``x0_hat`` per sampling step (0: off).
        backward_lr: Adam learning rate of backward guidance (pixel units of ``[-1, 1]``).
        recurrences: ``R``: each sampling step is taken ``R`` times, re-noising ``x_prev`` back to ``x_t``
            in between (1: no recurrence).
        guide_until: Apply guidance only while ``t >= guide_until`` (0: at every step). Late steps only
            sharpen details; guiding them can leave artefacts.
    """

    classifier_weight: float = 0.0
    forward_weight: float = 0.0
    backward_steps: int = 0
    backward_lr: float = 0.05
    recurrences: int = 1
    guide_until: int = 0

    def __post_init__(self) -> None:
        if min(self.classifier_weight, self.forward_weight, self.backward_lr) < 0 or self.backward_steps < 0:
            raise ConfigError(f"guidance weights, backward_steps and backward_lr must be >= 0, got {self}")
        if self.recurrences < 1:
            raise ConfigError(f"recurrences must be at least 1, got {self.recurrences}")

    @property
    def active(self) -> bool:
        """Whether any guidance term is on."""
        return self.classifier_weight > 0 or self.forward_weight > 0 or self.backward_steps > 0

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``classifier 1, backward 5x0.05, R=4``."""
        parts = []
        if self.classifier_weight:
            parts.append(f"classifier {self.classifier_weight:g}")
        if self.forward_weight:
            parts.append(f"forward {self.forward_weight:g}")
        if self.backward_steps:
            parts.append(f"backward {self.backward_steps}x{self.backward_lr:g}")
        if self.recurrences > 1:
            parts.append(f"R={self.recurrences}")
        return ", ".join(parts) or "none"


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``grad_x sum(fn(x))`` with gradients switched on locally."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x_in).sum(), x_in)[0]


def guided_noise(
    model: UNet2D,
    scheduler: Scheduler,
    reward: RewardLike | None,
    x: torch.Tensor,
    t: int,
    guidance: GuidanceConfig,
) -> torch.Tensor:
    """The noise prediction at ``(x_t, t)`` with every active guidance term applied.

    Args:
        model: The noise predictor.
        scheduler: The scheduler (for ``abar_t``).
        reward: ``log r`` to raise; ``None`` (or inactive guidance) gives the plain prediction.
        x: ``(B, 1, H, W)`` ``x_t``.
        t: The timestep.
        guidance: Weights of the terms.

    Returns:
        ``(B, 1, H, W)`` guided ``eps``.
    """
    active = reward is not None and guidance.active and t >= guidance.guide_until
    if not active:
        with torch.no_grad():
            return model(x, t)
    assert reward is not None
    abar = scheduler.alpha_bar(t, x)  # (B, 1, 1, 1)
    if guidance.forward_weight > 0:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps = model(x_in, t)
            x0 = ((x_in - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
            grad_fwd = torch.autograd.grad(reward.log_prob(x0, 0).sum(), x_in)[0]
        eps = eps.detach() - guidance.forward_weight * (1 - abar).sqrt() * grad_fwd
    else:
        with torch.no_grad():
            eps = model(x, t)
    if guidance.classifier_weight > 0:
        if not reward.time_dependent:
            raise ConfigError("classifier guidance on x_t needs a time-dependent reward model")
        eps = eps - guidance.classifier_weight * (1 - abar).sqrt() * _grad(lambda z: reward.log_prob(z, t), x)
    if guidance.backward_steps > 0:
        x0 = scheduler.predict_original(eps, t, x).clamp(-1, 1).detach()
        delta = torch.zeros_like(x0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=guidance.backward_lr)
        with torch.enable_grad():
            for _ in range(guidance.backward_steps):
                loss = -reward.log_prob(x0 + delta, 0).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        # Shifting eps by -sqrt(abar / (1 - abar)) delta moves x0_hat by exactly +delta (Bansal et al., Alg. 1).
        eps = eps - (abar / (1 - abar)).sqrt() * delta.detach()
    return eps.detach()


@torch.no_grad()
def censored_sample(
    model: UNet2D,
    scheduler: Scheduler,
    num: int,
    reward: RewardLike | None = None,
    guidance: GuidanceConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 250,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Sample with reward guidance (the plain reverse chain when ``reward`` is ``None``).

    The loop is that of :func:`hfrl.diffusion.sample` with :func:`guided_noise` in place of the model, and
    recurrence around each step: after a step ``x_t -> x_prev``, ``x_t`` is redrawn as
    ``sqrt(abar_t / abar_prev) x_prev + sqrt(1 - abar_t / abar_prev) xi`` and the step is taken again.

    The initial noise of all ``num`` samples is drawn first, so the same ``generator`` seed gives the same
    starting points with and without guidance (a paired comparison), whatever ``batch_size``. Later draws
    (stochastic steps, recurrence) are taken batch by batch, so those samples also depend on ``batch_size``.

    Args:
        model: The noise predictor.
        scheduler: DDIM or DDPM scheduler.
        num: Number of images.
        reward: Reward model or ensemble (``log P(benign)``).
        guidance: Guidance weights (default: none).
        generator: Randomness of ``x_T``, stochastic steps and recurrence noise.
        batch_size: Images sampled at once.
        progress: Called as ``progress(done, num)`` after each batch.

    Returns:
        ``(num, 1, H, W)`` images in ``[0, 1]`` on the CPU.
    """
    guidance = guidance or GuidanceConfig()
    device = next(model.parameters()).device
    if reward is not None:
        reward.to(device).eval()
    shape = (model.config.in_channels, *model.config.image_size)
    noise = initial_noise(num, shape, generator, "cpu")
    out = []
    for chunk in noise.split(batch_size):
        x = chunk.to(device)  # (b, 1, H, W)
        for t in scheduler.timesteps.tolist():
            for r in range(guidance.recurrences):
                eps = guided_noise(model, scheduler, reward, x, t, guidance)
                prev = scheduler.step(eps, t, x, generator=generator).prev_sample
                if r + 1 < guidance.recurrences:
                    ratio = scheduler.alpha_bar(t, x) / scheduler.alpha_bar(scheduler.previous_timestep(t), x)
                    x = ratio.sqrt() * prev + (1 - ratio).sqrt() * initial_noise(
                        len(x), shape, generator, device
                    )
            x = prev
        out.append(to_images(x).cpu())
        if progress is not None:
            progress(sum(len(o) for o in out), num)
    return torch.cat(out)
