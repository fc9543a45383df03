"""Each model kind's own training loss per sample: what "likelihood" means to DDPMs and flows (see :mod:`hfrl.diffusion`)."""

from __future__ import annotations

import torch

from hfrl.diffusion.models import DDPM_KIND, MODEL_KINDS, UNet2D, to_model_space
from hfrl.errors import ConfigError

# ---------------------------------------------------------------------------------------------------------
# Per-sample losses, by model kind


def denoising_loss(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Per-sample DDPM loss ``mean_pixels (eps_theta(x_t, t) - noise)^2`` (Ho et al. 2020, eq. 14).

    Args:
        model: A noise predictor.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` int64 timesteps in ``[0, T)``.
        noise: ``(B, C, H, W)`` standard normal noise.

    Returns:
        ``(B,)`` losses (differentiable in the model's weights).
    """
    x_t = model.schedule.add_noise(x0, noise, timesteps)  # (B, C, H, W)
    return ((model(x_t, timesteps) - noise) ** 2).flatten(1).mean(1)


def matching_input(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target)``: ``x0`` noised at ``timesteps`` as the model was trained, and what its output matches.

    ``ddpm``: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, target the noise (epsilon prediction);
    ``flow``: ``x_t = (1 - t) x0 + t noise`` at ``t = k / T``, target the velocity ``noise - x0``.

    Args:
        model: A DDPM or a rectified flow.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` timesteps in the model's units (see :func:`matching_loss`).
        noise: ``(B, C, H, W)`` standard normal noise.

    Raises:
        ConfigError: for an unknown model kind.
    """
    kind = getattr(model, "kind", DDPM_KIND)
    if kind == DDPM_KIND:
        return model.schedule.add_noise(x0, noise, timesteps.to(x0.device)), noise
    if kind == "flow":
        t = torch.as_tensor(timesteps, device=x0.device, dtype=x0.dtype) / model.schedule.num_train_timesteps
        t = t.reshape(-1, 1, 1, 1)
        return (1.0 - t) * x0 + t * noise, noise - x0
    raise ConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def matching_loss(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The model's own training loss per sample, by its kind: what "likelihood" means to both kinds.

    ``ddpm``: :func:`denoising_loss` (noise prediction); ``flow``: :func:`hfrl.flow.flow_matching_loss`
    (velocity prediction) at flow time ``t = k / T``; both through :func:`matching_input`.

    Args:
        model: A DDPM or a rectified flow.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` timesteps in the model's units, as its samplers' ``timesteps`` and
            :func:`random_timesteps` give them: integers in ``[0, T)`` for a DDPM, ``k = t * T`` in ``[0, T]``
            (fractional allowed) for a flow.
        noise: ``(B, C, H, W)`` standard normal noise.

    Returns:
        ``(B,)`` losses.
    """
    x_t, target = matching_input(model, x0, timesteps, noise)
    return ((model(x_t, timesteps.to(x0.device)) - target) ** 2).flatten(1).mean(1)


def random_timesteps(model: UNet2D, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training timesteps for :func:`matching_loss`, drawn as the model's own training draws them (CPU).

    ``ddpm``: uniform integers in ``[0, T)`` (int64); ``flow``: ``k = t * T`` with ``t`` uniform in ``(0, 1]``
    (float32).
    """
    total = model.schedule.num_train_timesteps
    if getattr(model, "kind", DDPM_KIND) == DDPM_KIND:
        return torch.randint(0, total, (num,), generator=generator)
    return (1.0 - torch.rand(num, generator=generator)) * total


FIT_TIMESTEPS = (20, 50, 100, 200)
"""Timesteps of :func:`denoising_error`: small enough that the image, not the noise, decides the error."""


@torch.no_grad()
def denoising_error(
    model: UNet2D,
    images: torch.Tensor,
    timesteps: tuple[int, ...] = FIT_TIMESTEPS,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """How well a diffusion model fits images: its own training loss, per image.

    Each image is noised to every ``t`` in ``timesteps`` with seeded noise (the training objective's terms,
    Ho et al. 2020, eq. 14); the squared error of the prediction (:func:`matching_loss`: the noise for a
    DDPM, the velocity for a rectified flow at ``t = k / T``) is averaged over pixels and timesteps.
    Images like the model's training data score low. Speckle, blotches and smeared strokes score high, even
    when a classifier still reads the image as a digit. This makes the pretrained model a yardstick of
    source quality kept after fine-tuning.

    Args:
        model: The DDPM or flow model (eval mode is not changed).
        images: ``(B, 1, H, W)`` in ``[0, 1]``.
        timesteps: Timesteps in the model's units (``[0, T)``).
        seed: Seed of the noise, so the same images give the same errors.
        batch_size: Images per forward pass.

    Returns:
        ``(B,)`` float32 errors, on the CPU.
    """
    device = next(model.parameters()).device
    # All the noise up front, so an image's error does not depend on how the batch is split.
    noises = torch.randn((len(timesteps), *images.shape), generator=torch.Generator().manual_seed(seed))
    out = []
    for start in range(0, images.shape[0], batch_size):
        x0 = to_model_space(images[start : start + batch_size].float()).to(device)
        err = torch.zeros(x0.shape[0], device=device)
        for t, noise in zip(timesteps, noises[:, start : start + batch_size].to(device)):
            tt = torch.full((x0.shape[0],), int(t), dtype=torch.long, device=device)
            err += matching_loss(model, x0, tt, noise)
        out.append((err / len(timesteps)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
