"""The model's own matching (pre-training) loss on finished samples, per sample, for any model kind.

The likelihood-free methods (``nft``, ``awm``) train on clean samples ``x0`` noised at random times with the
loss the model was pre-trained with. Everything model-specific sits here, dispatched on the model's
``kind`` attribute (``"ddpm"`` when it has none): how a time is drawn, how ``x0`` is noised, and what the
network's output is matched to. For the epsilon-prediction DDPM (Ho et al. 2020) the output ``eps_theta(x_t, t)``
is matched to the noise of ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``; a velocity-prediction flow
model adds its case to :func:`matching_input` and :func:`random_times`.
"""

from __future__ import annotations

import torch
from torch import nn

from hfrl.errors import ConfigError

DDPM = "ddpm"


def model_kind(model: nn.Module) -> str:
    """The model's kind (``"ddpm"`` when it does not say)."""
    return str(getattr(model, "kind", DDPM))


def random_times(model: nn.Module, num: int, generator: torch.Generator) -> torch.Tensor:
    """``(num,)`` times at which :func:`matching_loss` noises samples, drawn as the model was pre-trained.

    DDPM: int64 timesteps uniform in ``[0, T)`` (Ho et al.'s ``L_simple``).

    Raises:
        ConfigError: for a model kind without a matching loss.
    """
    kind = model_kind(model)
    if kind == DDPM:
        return torch.randint(0, model.schedule.num_train_timesteps, (num,), generator=generator)  # type: ignore[union-attr]
    raise ConfigError(f"no matching loss for model kind {kind!r}")


def matching_input(
    model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target)``: the noised input at times ``t`` and what the network's output is matched to.

    Args:
        model: The generator (its ``kind`` and noise schedule decide).
        x0: ``(B, C, H, W)`` clean samples in model space (``[-1, 1]``).
        t: ``(B,)`` times from :func:`random_times`.
        noise: ``(B, C, H, W)`` standard normal noise.

    Raises:
        ConfigError: for a model kind without a matching loss.
    """
    kind = model_kind(model)
    if kind == DDPM:
        x_t = model.schedule.add_noise(x0, noise, t.to(x0.device))  # type: ignore[union-attr]
        return x_t, noise
    raise ConfigError(f"no matching loss for model kind {kind!r}")


def matching_loss(model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``(B,)`` the model's matching loss per sample: mean over pixels of ``(output - target)^2``.

    For the DDPM this is ``L_simple`` (Ho et al. 2020 eq. 14), the loss it was pre-trained with.

    Args:
        model: The generator.
        x0: ``(B, C, H, W)`` clean samples in model space.
        t: ``(B,)`` times from :func:`random_times`.
        noise: ``(B, C, H, W)`` standard normal noise.
    """
    x_t, target = matching_input(model, x0, t, noise)
    return ((model(x_t, t.to(x0.device)) - target) ** 2).flatten(1).mean(1)


__all__ = ["matching_input", "matching_loss", "model_kind", "random_times"]
