"""Digit classifiers behind the synthetic labeler and the evaluator.

Two deliberately different architectures, trained on disjoint halves of the data with different seeds,
so that a generator which learns to fool one of them (reward hacking) is caught by the other:

* ``cnn``: two 3x3 conv blocks with max-pooling and batch norm (the synthetic labeler's).
* ``lenet``: 5x5 convolutions, average pooling, tanh, dropout (the evaluator's).

Both are trained on clean digits *and* on degraded versions of them (blur, noise, erased patches), so
that they read the blurry outputs of a denoiser as a person would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hfrl.data import ImageSet
from hfrl.errors import ConfigError
from hfrl.generators import MAX_PARAMETERS, MAX_SIDE, check_int

ARCHITECTURES = ("cnn", "lenet")


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier architecture.

    Attributes:
        arch: ``cnn`` or ``lenet``.
        num_classes: Number of output classes.
        image_size: ``(H, W)`` of the inputs.
        width: Channel multiplier.
    """

    arch: str = "cnn"
    num_classes: int = 10
    image_size: tuple[int, int] = field(default=(28, 28))
    width: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown classifier {self.arch!r}; expected one of {', '.join(ARCHITECTURES)}")
        for name, low, high in (("num_classes", 1, 100_000), ("width", 2, 1024)):
            object.__setattr__(self, name, check_int("classifier", name, getattr(self, name), low, high))
        if not isinstance(self.image_size, (tuple, list)) or len(self.image_size) != 2:
            raise ConfigError(f"classifier image_size must be [H, W], got {self.image_size!r}")
        h, w = (check_int("classifier", "image_size", v, 12, MAX_SIDE) for v in self.image_size)
        object.__setattr__(self, "image_size", (h, w))
        flat = 2 * self.width * (h // 4) * (w // 4)  # the largest layer: the head's first dense layer
        if 128 * flat > MAX_PARAMETERS:
            raise ConfigError(
                f"classifier config describes about {128 * flat:.2g} parameters (more than "
                f"{MAX_PARAMETERS:.2g}); check width and image_size"
            )


class DigitClassifier(nn.Module):
    """Image classifier ``(B, 1, H, W) -> (B, num_classes)`` logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        h, wd = config.image_size
        if config.arch == "cnn":
            self.features = nn.Sequential(
                nn.Conv2d(1, w, 3, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.Conv2d(w, w, 3, padding=1),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(w, 2 * w, 3, padding=1),
                nn.BatchNorm2d(2 * w),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
            )
            flat = 2 * w * (h // 4) * (wd // 4)
            self.head = nn.Sequential(
                nn.Dropout(0.3), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, config.num_classes)
            )
        else:
            self.features = nn.Sequential(
                nn.Conv2d(1, w // 2, 5, padding=2),
                nn.Tanh(),
                nn.AvgPool2d(2),
                nn.Conv2d(w // 2, w, 5),
                nn.Tanh(),
                nn.AvgPool2d(2),
                nn.Flatten(),
            )
            flat = w * ((h // 2 - 4) // 2) * ((wd // 2 - 4) // 2)
            self.head = nn.Sequential(
                nn.Linear(flat, 120),
                nn.Tanh(),
                nn.Dropout(0.2),
                nn.Linear(120, 84),
                nn.Tanh(),
                nn.Linear(84, config.num_classes),
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` for images ``(B, 1, H, W)`` in ``[0, 1]``."""
        return self.head(self.features(images))

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Softmax class probabilities ``(B, num_classes)``, batched, without gradients."""
        was_training = self.training
        self.eval()
        out = torch.cat([F.softmax(self(chunk), dim=1) for chunk in images.split(batch_size)])
        self.train(was_training)
        return out


def build_classifier(config: ClassifierConfig | dict) -> DigitClassifier:
    """Instantiate a classifier from its config or config dict."""
    if isinstance(config, dict):
        try:
            config = ClassifierConfig(**config)
        except TypeError as exc:
            raise ConfigError(f"bad classifier config: {exc}") from None
    return DigitClassifier(config)


def classifier_config_dict(config: ClassifierConfig) -> dict:
    """JSON-ready config."""
    return asdict(config)


def degrade(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random degradations a denoiser's output may show: blur, faint noise, shifts, erased patches.

    Args:
        images: ``(B, 1, H, W)`` clean images.
        generator: CPU generator.

    Returns:
        ``(B, 1, H, W)`` degraded images in ``[0, 1]`` (a quarter of them left clean).
    """
    b = images.shape[0]
    out = images.clone()
    choice = torch.randint(0, 4, (b,), generator=generator)
    blur = choice == 1
    if blur.any():
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :]) / 256.0
        blurred = F.conv2d(out[blur], kernel[None, None], padding=2)
        out[blur] = blurred
    noisy = choice == 2
    if noisy.any():
        out[noisy] = out[noisy] + 0.15 * torch.randn(out[noisy].shape, generator=generator)
    shift = choice == 3
    if shift.any():
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
        out[shift] = torch.roll(out[shift], shifts=(dy, dx), dims=(2, 3))
        # thin the strokes a little, as an over-smoothing denoiser does
        out[shift] = out[shift] * (0.6 + 0.4 * torch.rand((int(shift.sum()), 1, 1, 1), generator=generator))
    return out.clamp_(0.0, 1.0)


def train_classifier(
    data: ImageSet,
    config: ClassifierConfig,
    *,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> DigitClassifier:
    """Train a classifier with degradation augmentation.

    Args:
        data: Labelled images ``(N, 1, H, W)``.
        config: Architecture.
        epochs: Passes over ``data``.
        batch_size: Mini-batch size.
        lr: Adam learning rate (cosine-decayed to zero).
        seed: Seeds initialisation, shuffling and augmentation.
        device: Training device.
        progress: Show a progress bar.

    Returns:
        The trained classifier in eval mode, on ``device``.
    """
    device = torch.device(device)
    # Initialisation and dropout draw from torch's global generator: seed it inside fork_rng, so the
    # caller's global RNG state is left as it was (no hidden global seeding).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        model = DigitClassifier(config).to(device)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * ((len(data) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()
        for _ in tqdm(range(epochs), desc=f"classifier[{config.arch}]", disable=not progress, leave=False):
            perm = torch.randperm(len(data), generator=gen)
            for idx in perm.split(batch_size):
                x = degrade(data.images[idx], gen).to(device)
                y = data.labels[idx].to(device)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        return model.eval()


@dataclass(frozen=True)
class ClassifierRecipe:
    """How one of the shipped classifiers is trained (so scripts and tests agree).

    Attributes:
        arch: Architecture.
        half: Which half (0 or 1) of the per-class split of the data it trains on.
        seed: Training seed.
        epochs: Training epochs.
    """

    arch: str
    half: int
    seed: int
    epochs: int = 15


LABELER_RECIPE = ClassifierRecipe(arch="cnn", half=0, seed=11)
EVALUATOR_RECIPE = ClassifierRecipe(arch="lenet", half=1, seed=22)
HALVES_SEED = 1234


def classifier_half(data: ImageSet, half: int, seed: int = HALVES_SEED) -> ImageSet:
    """One of two disjoint, per-class stratified halves of ``data``.

    The labeler's and the evaluator's classifiers train on different halves, so they never share a
    training image.
    """
    if half not in (0, 1):
        raise ConfigError(f"half must be 0 or 1, got {half}")
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in torch.unique(data.labels):
        idx = torch.nonzero(data.labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        cut = len(idx) // 2
        chosen.append(idx[:cut] if half == 0 else idx[cut:])
    return data.subset(torch.sort(torch.cat(chosen)).values, f"{data.name}/half{half}")
