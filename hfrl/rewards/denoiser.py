"""A label-free estimate of what an output should look like: a self-supervised denoiser of the inputs.

The judges call an output good when it is recognisably the input's digit *and* structurally the same
image (SSIM and correlation to the clean digit above a threshold, see :mod:`hfrl.judges`). A reward model
never sees the clean digit — but it can estimate it without labels and without clean images: a denoiser
trained by Noise2Self (Batson & Royer 2019, arXiv 1901.11365) on the noisy target-domain inputs alone.
The network sees each noisy image with a grid of pixels masked out and learns to predict those pixels
from their surroundings; because the noise is independent from pixel to pixel, the best such prediction
is the expected noisy value given the clean image, i.e. a denoised image (up to the affine distortion
that clipping brings, which :class:`SelfSupervisedDenoiser` removes by mapping the background and stroke
levels to 0 and 1). For spatially correlated noise, :class:`DenoiserConfig`'s ``radius`` (wide blind
spots) and ``stride`` (pixel-shuffle down-sampling) select the variants of :mod:`hfrl.blindspot`.

The reward model then compares an output with this estimate (:func:`similarity_features`: SSIM,
correlation, RMSE) — the same kind of comparison the judges make with the clean image. This is a prior
learned from the inputs, not from people: ``scripts/bench_reward.py`` reports what it gives without any
label, so the share due to feedback stays visible.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from hfrl.blindspot import blindspot_batch, shuffle_down, shuffle_up
from hfrl.device import resolve_device
from hfrl.errors import DataError
from hfrl.generators import GeneratorConfig, build_generator
from hfrl.metrics import ssim
from hfrl.rewards.config import DenoiserConfig

STATS = ("ssim", "corr", "rmse")
"""Scalar features of (output, denoised input) pairs, in the order :func:`similarity_features` returns them."""


class SelfSupervisedDenoiser(nn.Module):
    """A generator network trained by Noise2Self, with the affine map from its output to a clean scale.

    ``forward(noisy) = clamp((net(noisy) - low) / (high - low), 0, 1)``, ``(B, C, H, W)``.

    Args:
        config: Architecture of the network (a :class:`~hfrl.generators.GeneratorConfig` or its dict);
            a small ``unet`` by default.

    Buffers ``low`` and ``high`` (set by :func:`train_denoiser`) are the network's output level
    on background and on strokes, and ``stride`` the pixel-shuffle factor the network works at (1: whole
    images); all three are saved with the weights.
    """

    def __init__(self, config: GeneratorConfig | dict[str, Any] | None = None, stride: int = 1) -> None:
        super().__init__()
        self.net = build_generator(config or GeneratorConfig(family="unet", width=16))
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(1.0))
        self.register_buffer("stride", torch.tensor(int(stride)))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.setdefault(prefix + "stride", torch.tensor(1))  # saved before pixel-shuffle existed
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def raw(self, noisy: torch.Tensor) -> torch.Tensor:
        """The network's output on whole images (through the sub-images when ``stride > 1``)."""
        stride = int(self.stride)
        if stride == 1:
            return self.net(noisy)
        return shuffle_up(self.net(shuffle_down(noisy, stride)), stride, tuple(noisy.shape[-2:]))

    @property
    def config(self) -> GeneratorConfig:
        """The network's architecture."""
        return self.net.config

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Clean-scale estimates ``(B, C, H, W)`` in ``[0, 1]`` of ``(B, C, H, W)`` noisy images."""
        span = (self.high - self.low).clamp(min=1e-3)
        return ((self.raw(noisy) - self.low) / span).clamp(0.0, 1.0)


def train_denoiser(
    noisy: torch.Tensor, config: DenoiserConfig | None = None
) -> tuple[SelfSupervisedDenoiser, dict[str, float]]:
    """Train a :class:`SelfSupervisedDenoiser` by Noise2Self on noisy images only.

    Args:
        noisy: ``(N, C, H, W)`` noisy inputs (no clean images, no labels).
        config: Training settings.

    Returns:
        ``(denoiser in eval mode, {"loss": final masked MSE, "low": ..., "high": ..., "seconds": ...})``.

    Raises:
        DataError: for fewer than 8 images.
    """
    config = config or DenoiserConfig()
    if noisy.ndim != 4 or noisy.shape[0] < 8:
        raise DataError(
            f"the self-supervised denoiser needs at least 8 noisy images (N, C, H, W), got {tuple(noisy.shape)}"
        )
    device = resolve_device(config.device)
    start = time.perf_counter()
    data = shuffle_down(noisy, config.stride).to(device)  # whole images when stride is 1
    h, w = data.shape[-2:]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model = SelfSupervisedDenoiser(
            GeneratorConfig(
                family="unet", width=config.width, image_size=(h, w), channels=int(data.shape[1])
            ),
            stride=config.stride,
        ).to(device)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=config.lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(config.steps):
        idx = torch.randint(0, data.shape[0], (min(config.batch_size, data.shape[0]),), generator=g).to(
            device
        )
        x = data[idx]
        phase = tuple(int(v) for v in torch.randint(0, config.grid, (2,), generator=g))
        masked, mask = blindspot_batch(x, phase, config.grid, config.radius)  # type: ignore[arg-type]
        # Noise2Self: predict the masked pixels from their surroundings only
        loss = (((model.net(masked) - x) ** 2) * mask).sum() / (mask.sum() * x.shape[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        raw = torch.cat([model.raw(chunk.to(device)) for chunk in noisy[:2048].split(512)]).flatten()
        # Background covers most of a digit image; strokes the brightest few per cent.
        low, high = torch.quantile(raw, 0.5), torch.quantile(raw, 0.99)
        model.low.copy_(low)
        model.high.copy_(torch.maximum(high, low + 1e-2))
    for p in model.parameters():
        p.requires_grad_(False)
    info = {
        "loss": float(loss.detach()),
        "low": float(low),
        "high": float(high),
        "seconds": time.perf_counter() - start,
    }
    return model, info


def similarity_features(output: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """How alike an output and the denoised input are: ``(B, 3)`` = SSIM, Pearson correlation, RMSE.

    Differentiable in ``output`` (agents backpropagate through the reward).

    Args:
        output: ``(B, C, H, W)`` outputs.
        denoised: ``(B, C, H, W)`` estimates from :class:`SelfSupervisedDenoiser`.
    """
    s = ssim(output, denoised)  # (B,)
    oc = output.flatten(1) - output.flatten(1).mean(1, keepdim=True)
    rc = denoised.flatten(1) - denoised.flatten(1).mean(1, keepdim=True)
    corr = (oc * rc).sum(1) / (oc.norm(dim=1) * rc.norm(dim=1)).clamp(min=1e-6)
    rmse = ((output - denoised) ** 2).flatten(1).mean(1).clamp(min=1e-8).sqrt()
    return torch.stack([s, corr, rmse], dim=1)
