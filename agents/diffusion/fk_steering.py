"""Feynman-Kac steering: a particle sampler steered by a reward on the predicted clean image.

Singhal et al. 2025, arXiv 2501.06848. ``k`` particles per output run the sampler side by side; every
``resample_every`` steps each output's particles are resampled in proportion to the potential

    G_t = exp(lambda * (r(x0_hat_t) - r(x0_hat_{t+1})))      (the paper's "difference" potential)

where ``x0_hat_t`` is the scheduler's prediction of the clean image at step ``t`` and ``r`` a reward on clean
images (here the reward model learned from the labels). Particles whose predicted image improved under
the reward are copied, the others dropped; at the end each output keeps its particle with the highest
reward. No weight changes: like best-of-N it spends sampling time, but it prunes bad chains halfway instead
of finishing them. Beside :mod:`hfrl.censoring`'s gradient guidance, it needs no reward gradient.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hfrl.diffusion import Scheduler, to_images


def resample(log_potentials: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Multinomial resampling within each output's particles.

    Args:
        log_potentials: ``(B, k)`` log-potentials of ``k`` particles for each of ``B`` outputs.
        generator: The draw's randomness (CPU).

    Returns:
        ``(B * k,)`` int64 indices into the flattened particles; output ``i``'s ``k`` new particles are
        drawn from its own (indices ``i k .. i k + k - 1``).
    """
    b, k = log_potentials.shape
    probs = torch.softmax(log_potentials.float().cpu(), dim=1)
    picks = torch.multinomial(probs, k, replacement=True, generator=generator)  # (B, k)
    return (picks + torch.arange(b)[:, None] * k).reshape(-1)


@torch.no_grad()
def fk_steer(
    model: nn.Module,
    scheduler: Scheduler,
    reward: Callable[[torch.Tensor], torch.Tensor],
    noise: torch.Tensor,
    particles: int,
    *,
    lam: float = 10.0,
    resample_every: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample with Feynman-Kac steering; returns ``(B, C, H, W)`` images in ``[0, 1]`` (CPU).

    Args:
        model: The noise predictor.
        scheduler: The sampler (its timesteps and stochastic steps).
        reward: Reward of images ``(N, C, H, W)`` in ``[0, 1]`` -> ``(N,)``.
        noise: ``(B * particles, C, H, W)`` initial noise, output ``i``'s particles consecutive.
        particles: ``k``, particles per output.
        lam: ``lambda``, the potentials' temperature (0: plain sampling, then best of ``k``).
        resample_every: Resample after every this many steps (never after the last).
        generator: Randomness of the steps and the resampling (CPU).
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    x = noise.to(device)
    b = x.shape[0] // particles
    prev = torch.zeros(x.shape[0], device=device)
    steps = scheduler.timesteps.tolist()
    for j, t in enumerate(steps):
        out = scheduler.step(model(x, int(t)), int(t), x, generator=gen)
        x = out.prev_sample
        if (j + 1) % resample_every == 0 and j + 1 < len(steps):
            r = reward(to_images(out.pred_original_sample)).to(device).float()
            idx = resample((lam * (r - prev)).view(b, particles), gen).to(device)
            x, prev = x[idx], r[idx]
    images = to_images(x)
    scores = reward(images).float().view(b, particles).cpu()
    best = scores.argmax(dim=1) + torch.arange(b) * particles
    return images[best.to(images.device)].cpu()


__all__ = ["fk_steer", "resample"]
