"""Training a diffusion model (either kind) from images (see :mod:`hfrl.diffusion`)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.diffusion.losses import matching_loss, random_timesteps
from hfrl.diffusion.models import UNet2D, to_model_space

# ---------------------------------------------------------------------------------------------------------
# Training


@dataclass
class DDPMTrainConfig:
    """How :func:`train_ddpm` trains a noise predictor (Ho et al. 2020's simple loss).

    The defaults are sized for a 2-core CPU; ``scripts/train_ddpm.py`` prints how long a run takes.
    """

    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up over 200 steps, then cosine decay to 5 %)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ema_decay: float = 0.998
    """Decay of the exponential moving average of the weights; the EMA model is what is returned. Short
    runs need a short EMA horizon (here ~500 steps)."""
    max_shift: int = 2
    """Random translation of the training images by up to this many pixels (augmentation)."""
    seed: int = 0
    """Seeds initialisation, batches, timesteps, noise and augmentation."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with background (0).

    Args:
        images: ``(B, C, H, W)`` in ``[0, 1]``.
        max_shift: Largest shift in pixels (0: unchanged).
        generator: Randomness of the shifts (CPU).

    Returns:
        ``(B, C, H, W)``.
    """
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator)
    padded = F.pad(images, (max_shift,) * 4)  # (B, C, H + 2s, W + 2s)
    out = torch.empty_like(images)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        out[i] = padded[i, :, max_shift - dy : max_shift - dy + h, max_shift - dx : max_shift - dx + w]
    return out


def train_ddpm(
    images: torch.Tensor,
    model: UNet2D,
    config: DDPMTrainConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    log_every: int = 100,
    on_checkpoint: Callable[[int, UNet2D], None] | None = None,
    checkpoint_every: int = 1000,
) -> UNet2D:
    """Train ``model`` to predict the noise of noised ``images`` (``L_simple``, Ho et al. 2020 eq. 14).

    The objective follows the model's kind (:func:`matching_loss` at :func:`random_timesteps`): a
    :class:`hfrl.flow.FlowUNet2D` learns the velocity of a rectified flow instead (see
    :func:`hfrl.flow.train_flow`).

    Args:
        images: ``(N, C, H, W)`` training images in ``[0, 1]``.
        model: The (untrained) noise or velocity predictor; trained in place.
        config: Steps, batch size, learning rate, EMA, augmentation and seed.
        device: Training device.
        log: Called every ``log_every`` steps with ``{"step", "loss", "lr", "seconds"}``.
        log_every: Logging period in steps.
        on_checkpoint: Called as ``on_checkpoint(step, ema_model)`` every ``checkpoint_every`` steps (e.g. to
            save the EMA weights while training runs).
        checkpoint_every: Checkpoint period in steps.

    Returns:
        The exponential moving average of the weights, as a new :class:`UNet2D` in eval mode on ``device``.
    """
    config = config or DDPMTrainConfig()
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = min(200, max(1, config.steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start = time.perf_counter()
    running = 0.0
    for step in range(config.steps):
        idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=gen)
        x0 = to_model_space(random_shift(images[idx], config.max_shift, gen)).to(device)  # (B, C, H, W)
        t = random_timesteps(model, config.batch_size, gen)  # (B,)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        loss = matching_loss(model, x0, t.to(device), noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))  # short horizon early on
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        running += loss.item()
        if log is not None and ((step + 1) % log_every == 0 or step + 1 == config.steps):
            n = (step % log_every) + 1
            log(
                {
                    "step": step + 1,
                    "loss": running / n,
                    "lr": sched.get_last_lr()[0],
                    "seconds": time.perf_counter() - start,
                }
            )
            running = 0.0
        if on_checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < config.steps:
            on_checkpoint(step + 1, ema)
    model.eval()
    return ema
