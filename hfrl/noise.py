"""Noise models that corrupt clean images into the observations a denoiser sees.

Each model has one ``level`` parameter, takes its randomness from an explicit ``torch.Generator`` and
clips its output to ``[0, 1]``. The default, clipped Gaussian noise with ``sigma = 0.5``, keeps a digit
recognisable to a person looking at the noisy image, which the feedback loop needs: at ``sigma = 1.0`` the
digit is mostly gone and nobody could judge whether an output is right.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch

from hfrl.errors import ConfigError

DEFAULT_NOISE = "gaussian"
DEFAULT_LEVEL = 0.5


def _randn(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device)


def _rand(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


@dataclass(frozen=True)
class NoiseModel(ABC):
    """A corruption ``clean -> noisy`` with one strength parameter ``level``."""

    level: float
    name: str = "noise"

    def __post_init__(self) -> None:
        if not (self.level >= 0.0):
            raise ConfigError(f"{self.name} noise level must be >= 0, got {self.level}")

    @abstractmethod
    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Corrupt ``clean`` images.

        Args:
            clean: ``(..., H, W)`` float images in ``[0, 1]``.
            generator: Source of randomness; on the CPU or on ``clean``'s device.

        Returns:
            Noisy images of the same shape and device, clipped to ``[0, 1]``.
        """
        return self._corrupt(clean, generator).clamp_(0.0, 1.0)

    def with_level(self, level: float) -> NoiseModel:
        """A copy with another strength."""
        return replace(self, level=float(level))


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise with standard deviation ``level`` (pixel units), then clipped."""

    name: str = "gaussian"

    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return clean + self.level * _randn(clean.shape, generator, clean)


@dataclass(frozen=True)
class SaltPepperNoise(NoiseModel):
    """Each pixel becomes 0 or 1 (equally likely) with probability ``level``."""

    name: str = "salt-pepper"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.level > 1.0:
            raise ConfigError(f"salt-pepper probability must be in [0, 1], got {self.level}")

    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = _rand(clean.shape, generator, clean)
        salt = (u < self.level / 2).to(clean.dtype)
        pepper = ((u >= self.level / 2) & (u < self.level)).to(clean.dtype)
        keep = 1.0 - salt - pepper
        return clean * keep + salt


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Shot noise: ``Poisson(peak * x) / peak`` with ``peak = 1 / level**2`` photons at full white.

    ``level`` is the relative noise at a white pixel, so it reads like the Gaussian ``sigma``.
    """

    name: str = "poisson"

    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.level == 0:
            return clean.clone()
        peak = 1.0 / self.level**2
        rate = (clean * peak).to(generator.device if generator is not None else clean.device)
        return (torch.poisson(rate, generator=generator) / peak).to(clean.device)


NOISE_MODELS: dict[str, type[NoiseModel]] = {
    "gaussian": GaussianNoise,
    "salt-pepper": SaltPepperNoise,
    "poisson": PoissonNoise,
}


def make_noise(name: str = DEFAULT_NOISE, level: float = DEFAULT_LEVEL) -> NoiseModel:
    """Build a noise model by name (``gaussian``, ``salt-pepper`` or ``poisson``) and level."""
    if name not in NOISE_MODELS:
        raise ConfigError(f"unknown noise model {name!r}; expected one of {', '.join(NOISE_MODELS)}")
    return NOISE_MODELS[name](level=float(level))
