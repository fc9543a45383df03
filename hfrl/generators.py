"""Small image-to-image generators (denoisers) with outputs in ``[0, 1]``.

Every generator maps ``(B, C, H, W)`` noisy images to ``(B, C, H, W)`` outputs, C = 1 (grey) or 3 (RGB),
any ``H, W`` (the convolutional families pad what is not a multiple of 4 and crop it off again). It exposes
:meth:`Generator.logits` (pre-sigmoid) as well as ``forward`` so that a policy can place its Gaussian
either in pixel space or in logit space (see :mod:`hfrl.policy`).

Two settings serve the blind-spot (self-supervised) baselines: ``shuffle = s`` runs the network on the
``s * s`` pixel-shuffled sub-images of each input and reassembles them (:mod:`hfrl.blindspot`), and
``levels = (low, high)`` maps the output's background and stroke levels to 0 and 1 (a network trained to
predict noisy pixels learns clipped noise's brighter background; the map removes it). Both are part of
the config, so a checkpoint reloads with them.

Three families:

* ``conv`` (default): conv encoder -> dense bottleneck -> conv decoder, plus a one-channel skip at quarter
  resolution. The dense bottleneck memorises what the source domain looks like, which reproduces the seed
  paper's failure: trained on noisy '0's it paints 0-like rings over other digits. Without the skip
  (``skip_channels=0``) it paints a '0' over almost every digit; with the 7x7 one-channel skip, the
  coarse layout of the input gets through and the target outputs become the mix of good and bad the seed
  paper starts from (the shipped source generators' good-rates, every result's lower bound, come from
  ``scripts/bench_bounds.py``: ``bench-results/bounds.md`` and the README).
* ``unet``: fully convolutional with skip connections; generalises across digits much better.
* ``mlp``: a plain MLP auto-encoder.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.blindspot import shuffle_down, shuffle_up
from hfrl.errors import ConfigError
from hfrl.names import FAMILIES

MAX_SIDE = 4096
"""Largest image height or width a generator config accepts."""
MAX_PARAMETERS = 2**28
"""Most parameters a generator config may describe (1 GiB of float32): a checkpoint JSON asking for more
is refused before anything is allocated."""


def check_int(owner: str, name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, or a one-line :class:`~hfrl.errors.ConfigError`.

    Args:
        owner: What the field belongs to, for the message (``generator``, ``classifier``).
        name: The field's name.
        value: The value read (a bool, a float or a string is refused).
        low: Smallest value allowed.
        high: Largest value allowed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy integers are fine
        raise ConfigError(f"{owner} {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{owner} {name} must be in [{low}, {high}], got {value}")
    return int(value)


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a generator.

    Attributes:
        family: ``conv``, ``unet`` or ``mlp``.
        width: Channels of the first conv layer (``conv``/``unet``) or hidden units / 4 (``mlp``).
        bottleneck: Size of the dense code (``conv``/``mlp``); 64 reproduces the domain gap.
        image_size: ``(H, W)``. ``conv`` and ``unet`` pad other sizes to multiples of 4 (replicating the
            border) and crop the output; the dense bottleneck's size follows from it.
        skip_channels: Channels of the quarter-resolution skip that bypasses the dense bottleneck
            (``conv`` only; 0 turns it off).
        shuffle: Pixel-shuffle factor: the network sees the ``shuffle**2`` sub-images of every
            ``shuffle``-th pixel (``unet`` only; 1: whole images).
        levels: ``(low, high)`` output levels mapped to 0 and 1 (``(0, 1)``: outputs as they are).
        channels: Image channels: 1 (grey) or 3 (RGB). Configs saved before colour existed have none
            and are grey.
    """

    family: str = "conv"
    width: int = 32
    bottleneck: int = 64
    image_size: tuple[int, int] = field(default=(28, 28))
    skip_channels: int = 1
    shuffle: int = 1
    levels: tuple[float, float] = (0.0, 1.0)
    channels: int = 1

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(
                f"unknown generator family {self.family!r}; expected one of {', '.join(FAMILIES)}"
            )
        for name, low, high in (("width", 1, 1024), ("bottleneck", 1, 65536), ("skip_channels", 0, 1024)):
            object.__setattr__(self, name, check_int("generator", name, getattr(self, name), low, high))
        if not isinstance(self.image_size, (tuple, list)) or len(self.image_size) != 2:
            raise ConfigError(f"generator image_size must be [H, W], got {self.image_size!r}")
        h, w = (check_int("generator", "image_size", v, 1, MAX_SIDE) for v in self.image_size)
        object.__setattr__(self, "shuffle", check_int("generator", "shuffle", self.shuffle, 1, 8))
        if self.shuffle > 1 and self.family != "unet":
            raise ConfigError(
                f"shuffle must be 1, or > 1 for the fully convolutional unet, got {self.shuffle} ({self.family})"
            )
        channels = check_int("generator", "channels", self.channels, 1, 3)
        if channels == 2:
            raise ConfigError("generator channels must be 1 (grey) or 3 (RGB), got 2")
        object.__setattr__(self, "channels", channels)
        if not isinstance(self.levels, (tuple, list)) or len(self.levels) != 2:
            raise ConfigError(f"generator levels must be [low, high], got {self.levels!r}")
        low, high = (float(v) for v in self.levels)
        if not (0.0 <= low < high <= 1.0):
            raise ConfigError(f"levels must satisfy 0 <= low < high <= 1, got {self.levels}")
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "levels", (low, high))
        n = self.parameter_estimate()
        if n > MAX_PARAMETERS:
            raise ConfigError(
                f"generator config describes about {n:.2g} parameters (more than {MAX_PARAMETERS:.2g}); "
                "check width, bottleneck and image_size"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the generator takes and makes."""
        return (self.channels, *self.image_size)

    @property
    def quarter_size(self) -> tuple[int, int]:
        """``(H/4, W/4)`` after padding to multiples of 4: the size of the ``conv`` bottleneck's grid."""
        return (-(-self.image_size[0] // 4), -(-self.image_size[1] // 4))

    def parameter_estimate(self) -> int:
        """Roughly how many parameters the described network has (its largest layers), before building it."""
        h, w = self.image_size
        c = self.width
        if self.family == "conv":
            h4, w4 = self.quarter_size
            return 2 * (2 * c * h4 * w4) * self.bottleneck + 40 * c * c
        if self.family == "mlp":
            hidden = 8 * c
            return 2 * self.channels * h * w * hidden + 2 * hidden * self.bottleneck
        return 400 * c * c  # unet: 3x3 convolutions up to 4w channels

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


class Generator(nn.Module):
    """Base class: subclasses implement :meth:`core_logits`; ``forward`` squashes them into ``[0, 1]``."""

    config: GeneratorConfig

    multiple: int = 4
    """What the network's input height and width must be multiples of (1: any size)."""

    def core_logits(self, noisy: torch.Tensor) -> torch.Tensor:
        """The network's pre-sigmoid outputs on what it sees (sub-images when ``config.shuffle > 1``)."""
        raise NotImplementedError

    def logits(self, noisy: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid outputs ``(B, C, H, W)`` of whole images."""
        s = self.config.shuffle
        if s > 1:
            return shuffle_up(self.core_logits(shuffle_down(noisy, s)), s, tuple(noisy.shape[-2:]))
        h, w = noisy.shape[-2:]
        m = self.multiple
        ph, pw = -h % m, -w % m
        if not ph and not pw:
            return self.core_logits(noisy)
        padded = F.pad(noisy, (0, pw, 0, ph), mode="replicate")  # a size the strided layers halve exactly
        return self.core_logits(padded)[..., :h, :w]

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Denoised images ``(B, C, H, W)`` in ``[0, 1]``."""
        return self.calibrate(torch.sigmoid(self.logits(noisy)))

    def calibrate(self, output: torch.Tensor) -> torch.Tensor:
        """Map ``config.levels`` of a sigmoid output to 0 and 1 (clipped); the identity for ``(0, 1)``."""
        low, high = self.config.levels
        if (low, high) == (0.0, 1.0):
            return output
        return ((output - low) / (high - low)).clamp(0.0, 1.0)

    def with_levels(self, low: float, high: float) -> Generator:
        """Set the output levels mapped to 0 and 1 (in place); returns ``self``."""
        self.config = dataclasses.replace(self.config, levels=(float(low), float(high)))
        return self


class ConvEncoderDecoder(Generator):
    """Conv encoder -> dense bottleneck (+ narrow quarter-resolution skip) -> transposed-conv decoder."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        w, k, c = config.width, config.skip_channels, config.channels
        h4, w4 = config.quarter_size
        self.encoder = nn.Sequential(
            nn.Conv2d(c, w, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, w, H/2, W/2)
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, 2w, H/4, W/4)
        )
        self.bottleneck = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * w * h4 * w4, config.bottleneck),
            nn.ReLU(),  # (B, bottleneck)
            nn.Linear(config.bottleneck, 2 * w * h4 * w4),
            nn.ReLU(),
            nn.Unflatten(1, (2 * w, h4, w4)),  # (B, 2w, H/4, W/4)
        )
        self.skip = nn.Conv2d(2 * w, k, 1) if k else None  # (B, k, H/4, W/4)
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * w + k, 2 * w, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),
            nn.ReLU(),  # (B, w, H/2, W/2)
            nn.ConvTranspose2d(w, c, 4, stride=2, padding=1),  # (B, C, H, W)
        )

    def core_logits(self, noisy: torch.Tensor) -> torch.Tensor:  # noqa: D102
        h = self.encoder(noisy)
        code = self.bottleneck(h)
        if self.skip is not None:
            code = torch.cat([code, self.skip(h)], dim=1)
        return self.decoder(code)


def _groups(channels: int) -> int:
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(_groups(c_out), c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(_groups(c_out), c_out),
        nn.SiLU(),
    )


class UNet(Generator):
    """A two-level U-Net with skip connections."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.down1 = _block(config.channels, w)  # (B, w, H, W)
        self.down2 = _block(w, 2 * w)  # (B, 2w, H/2, W/2)
        self.mid = _block(2 * w, 4 * w)  # (B, 4w, H/4, W/4)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)
        self.out = nn.Conv2d(w, config.channels, 1)
        self.pool = nn.AvgPool2d(2)

    def core_logits(self, noisy: torch.Tensor) -> torch.Tensor:  # noqa: D102
        d1 = self.down1(noisy)
        d2 = self.down2(self.pool(d1))
        m = self.mid(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(m), d2], dim=1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], dim=1))
        return self.out(u1)


class MLPAutoencoder(Generator):
    """Flatten -> MLP encoder -> bottleneck -> MLP decoder."""

    multiple = 1

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        hidden = 4 * config.width * 2
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, config.bottleneck),
            nn.ReLU(),
            nn.Linear(config.bottleneck, hidden),
            nn.ReLU(),
            nn.Linear(hidden, c * h * w),
            nn.Unflatten(1, (c, h, w)),
        )

    def core_logits(self, noisy: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(noisy)


_FAMILY_CLASSES: dict[str, type[Generator]] = {
    "conv": ConvEncoderDecoder,
    "unet": UNet,
    "mlp": MLPAutoencoder,
}


def build_generator(config: GeneratorConfig | dict) -> Generator:
    """Instantiate a generator from its config (a :class:`GeneratorConfig` or its dict form)."""
    if isinstance(config, dict):
        try:
            config = GeneratorConfig(
                **{
                    **config,
                    "image_size": tuple(config.get("image_size", (28, 28))),
                    "levels": tuple(config.get("levels", (0.0, 1.0))),
                }
            )
        except TypeError as exc:
            raise ConfigError(f"bad generator config: {exc}") from None
    return _FAMILY_CLASSES[config.family](config)
