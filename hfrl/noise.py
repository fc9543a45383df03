"""Noise models that corrupt clean images into the observations a denoiser sees.

Each model has one strength parameter ``level`` (and, for some, a shape parameter such as a correlation
length), takes its randomness from an explicit ``torch.Generator`` and clips its output to ``[0, 1]``.

* ``gaussian``: white Gaussian noise, independent from pixel to pixel. Blind-spot self-supervision
  (Noise2Self) removes it well without any clean image, so on this noise people's labels add little.
* ``correlated``: Gaussian noise convolved with a Gaussian kernel (a correlation length in pixels, 1 by
  default), as camera and microscope noise is after demosaicking and optics. Blind-spot methods with a
  one-pixel blind spot learn the identity on it, which is where feedback becomes the only signal.
* ``poisson-gaussian``: shot noise plus Gaussian read noise, the standard model of a real sensor.
* ``poisson`` and ``salt-pepper``.

A model is named by a spec string: ``"gaussian"``, or with its shape parameters,
``"correlated:length=1.5"`` or ``"poisson-gaussian:read=0.05"`` (see :func:`make_noise`). The level keeps
the digit readable to a person looking at the noisy image, which the feedback loop needs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from hfrl.errors import ConfigError

if TYPE_CHECKING:  # imported where used: the model names and spec checks (CLI --help) need no torch
    import torch

DEFAULT_NOISE = "gaussian"
DEFAULT_LEVEL = 0.5


def _randn(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    import torch

    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device)


def _rand(shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    import torch

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

    @property
    def spec(self) -> str:
        """The spec string :func:`make_noise` reads back: the name, then any shape parameter."""
        params = [
            f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if f.name not in ("level", "name")
        ]
        return self.name + (":" + ",".join(params) if params else "")


class GaussianDriven(NoiseModel):
    """Noise that is a fixed function of standard normal draws: ``clean + level * shape(z)``.

    The environment draws ``z`` from a counter-based generator keyed per episode, so such noise is
    vectorised and still a pure function of each episode's key (see :func:`hfrl.envs.denoise.corrupt`).
    """

    @property
    def margin(self) -> int:
        """Extra pixels on each side of the drawn normals that :meth:`shape` consumes (a kernel's radius)."""
        return 0

    def normal_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the standard normals one image needs, ``(C, H + 2m, W + 2m)``."""
        c, h, w = image_shape[-3:]
        return (c, h + 2 * self.margin, w + 2 * self.margin)

    def shape(self, z: torch.Tensor) -> torch.Tensor:
        """Turn ``(B, C, H + 2m, W + 2m)`` standard normals into ``(B, C, H, W)`` unit-variance noise."""
        return z

    def from_normal(self, clean: torch.Tensor, z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Noisy images from ``(B, C, H, W)`` clean images, normals of :meth:`normal_shape` and ``(B,)`` levels."""
        return (clean + levels.to(clean).view(-1, 1, 1, 1) * self.shape(z)).clamp_(0.0, 1.0)

    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        planes = clean.reshape(-1, 1, *clean.shape[-2:])  # every channel of every image on its own
        import torch

        z = _randn(torch.Size((planes.shape[0], *self.normal_shape(tuple(planes.shape)))), generator, clean)
        return (planes + self.level * self.shape(z)).reshape(clean.shape)


@dataclass(frozen=True)
class GaussianNoise(GaussianDriven):
    """Additive white Gaussian noise with standard deviation ``level`` (pixel units), then clipped."""

    name: str = "gaussian"


@dataclass(frozen=True)
class CorrelatedGaussianNoise(GaussianDriven):
    """Spatially correlated Gaussian noise: white noise convolved with a unit-energy Gaussian kernel.

    The kernel has standard deviation ``length`` pixels and is normalised so that ``sum(k**2) = 1``: every
    pixel's noise has standard deviation ``level`` exactly, and the correlation between pixels ``d`` apart
    is ``exp(-d**2 / (4 * length**2))`` (0.78 at lag 1 and 0.37 at lag 2 for ``length = 1``). The normals
    are drawn on a canvas larger by the kernel's radius and convolved without padding, so the noise is
    the same at the border as in the middle.
    """

    name: str = "correlated"
    length: float = 1.0
    """Standard deviation of the Gaussian kernel, in pixels (the correlation length)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0.0 < self.length <= 8.0):
            raise ConfigError(f"correlated noise length must be in (0, 8] pixels, got {self.length}")

    @property
    def margin(self) -> int:
        """The kernel's radius: three standard deviations."""
        return max(1, math.ceil(3 * self.length))

    def kernel(self) -> torch.Tensor:
        """The ``(2r + 1, 2r + 1)`` unit-energy Gaussian kernel."""
        import torch

        r = self.margin
        x = torch.arange(-r, r + 1, dtype=torch.float64)
        g = torch.exp(-(x**2) / (2 * self.length**2))
        k = g[:, None] * g[None, :]
        return (k / k.pow(2).sum().sqrt()).float()

    def shape(self, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        from torch.nn.functional import conv2d

        c = z.shape[1]
        k = self.kernel().to(z.device).expand(c, 1, -1, -1)
        return conv2d(z, k, groups=c)


@dataclass(frozen=True)
class PoissonGaussianNoise(NoiseModel):
    """A sensor's noise: shot noise ``Poisson(peak * x) / peak`` plus Gaussian read noise of std ``read``.

    ``level`` is the shot noise's relative size at a white pixel (``peak = 1 / level**2`` photons), as in
    :class:`PoissonNoise`; ``read`` is the read noise's standard deviation in pixel units.
    """

    name: str = "poisson-gaussian"
    read: float = 0.05
    """Standard deviation of the additive Gaussian read noise."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0.0 <= self.read <= 1.0):
            raise ConfigError(f"poisson-gaussian read noise must be in [0, 1], got {self.read}")

    def _corrupt(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        shot = PoissonNoise(self.level)._corrupt(clean, generator)
        return shot + self.read * _randn(clean.shape, generator, clean)


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
        import torch

        return (torch.poisson(rate, generator=generator) / peak).to(clean.device)


NOISE_MODELS: dict[str, type[NoiseModel]] = {
    "gaussian": GaussianNoise,
    "correlated": CorrelatedGaussianNoise,
    "poisson-gaussian": PoissonGaussianNoise,
    "salt-pepper": SaltPepperNoise,
    "poisson": PoissonNoise,
}


def make_noise(name: str = DEFAULT_NOISE, level: float = DEFAULT_LEVEL) -> NoiseModel:
    """Build a noise model from its spec string and level.

    Args:
        name: A model's name (one of :data:`NOISE_MODELS`), optionally followed by its shape parameters:
            ``"correlated:length=1.5"``, ``"poisson-gaussian:read=0.05"``.
        level: The noise strength.

    Raises:
        ConfigError: for an unknown model or parameter, or a value that is not a number.
    """
    base, _, params = str(name).partition(":")
    if base not in NOISE_MODELS:
        raise ConfigError(f"unknown noise model {base!r}; expected one of {', '.join(NOISE_MODELS)}")
    cls = NOISE_MODELS[base]
    allowed = {f.name for f in fields(cls)} - {"level", "name"}
    kwargs: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in allowed:
            hint = f"has parameters {', '.join(sorted(allowed))}" if allowed else "takes no parameters"
            raise ConfigError(f"noise {name!r}: cannot read {item!r} ({base} {hint})")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"noise {name!r}: {key.strip()} must be a number, got {value!r}") from None
    return cls(level=float(level), **kwargs)


def check_noise(name: str) -> str:
    """Validate a noise spec string (for argument parsers); returns it unchanged."""
    make_noise(name, 0.0)
    return name
