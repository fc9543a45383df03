"""Classifiers behind the synthetic labeler and the evaluator (the shipped digit ones and the user's own).

Two deliberately different architectures, trained on disjoint halves of the data with different seeds,
so that a generator which learns to fool one of them (reward hacking) is caught by the other:

* ``cnn``: two 3x3 conv blocks with max-pooling and batch norm (the synthetic labeler's).
* ``lenet``: 5x5 convolutions, average pooling, tanh, dropout (the evaluator's).

Both are trained on clean images *and* on degraded versions of them (blur, noise, shifts, thinned strokes),
so that they read the blurry outputs of a denoiser as a person would. They take grey or colour images
(``channels`` 1 or 3) of any size from 8x8; :func:`train_judge_pair` trains the two of a dataset (the shipped
digit judges, ``hfrl judges train`` on the user's images, ``scripts/bench_fashion.py``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hfrl.data import CHANNELS, MIN_SIDE, ImageSet
from hfrl.errors import ConfigError, DataError
from hfrl.generators import MAX_PARAMETERS, MAX_SIDE, check_int

ARCHITECTURES = ("cnn", "lenet")


@dataclass(frozen=True)
class ClassifierConfig:
    """Classifier architecture.

    Attributes:
        arch: ``cnn`` or ``lenet``.
        num_classes: Number of output classes.
        image_size: ``(H, W)`` of the inputs (each at least 8).
        width: Channel multiplier.
        channels: Channels of the inputs: 1 (grey) or 3 (RGB).
    """

    arch: str = "cnn"
    num_classes: int = 10
    image_size: tuple[int, int] = field(default=(28, 28))
    width: int = 32
    channels: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown classifier {self.arch!r}; expected one of {', '.join(ARCHITECTURES)}")
        for name, low, high in (("num_classes", 1, 100_000), ("width", 2, 1024)):
            object.__setattr__(self, name, check_int("classifier", name, getattr(self, name), low, high))
        if not isinstance(self.image_size, (tuple, list)) or len(self.image_size) != 2:
            raise ConfigError(f"classifier image_size must be [H, W], got {self.image_size!r}")
        h, w = (check_int("classifier", "image_size", v, MIN_SIDE, MAX_SIDE) for v in self.image_size)
        object.__setattr__(self, "image_size", (h, w))
        if isinstance(self.channels, bool) or self.channels not in CHANNELS:
            raise ConfigError(f"classifier channels must be 1 or 3, got {self.channels!r}")
        flat = 2 * self.width * (h // 4) * (w // 4)  # the largest layer: the head's first dense layer
        if 128 * flat > MAX_PARAMETERS:
            raise ConfigError(
                f"classifier config describes about {128 * flat:.2g} parameters (more than "
                f"{MAX_PARAMETERS:.2g}); check width and image_size"
            )


def lenet_padded(height: int, width: int) -> bool:
    """Whether ``lenet``'s second 5x5 convolution pads by 2: for inputs with a side under 12 pixels.

    So images from 8x8 fit; 12x12 and larger (the 28x28 digits) use the classic unpadded one.
    """
    return min(int(height), int(width)) < 12


def lenet_side(side: int, padded: bool) -> int:
    """Side of the ``lenet`` feature map for an input side: ``(side // 2 - 4) // 2``, unpadded."""
    return (side // 2 - (0 if padded else 4)) // 2


class DigitClassifier(nn.Module):
    """Image classifier ``(B, C, H, W) -> (B, num_classes)`` logits (digits or any labelled images)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        h, wd = config.image_size
        if config.arch == "cnn":
            self.features = nn.Sequential(
                nn.Conv2d(config.channels, w, 3, padding=1),
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
                nn.Conv2d(config.channels, w // 2, 5, padding=2),
                nn.Tanh(),
                nn.AvgPool2d(2),
                nn.Conv2d(w // 2, w, 5, padding=2 if lenet_padded(h, wd) else 0),
                nn.Tanh(),
                nn.AvgPool2d(2),
                nn.Flatten(),
            )
            padded = lenet_padded(h, wd)
            flat = w * lenet_side(h, padded) * lenet_side(wd, padded)
            self.head = nn.Sequential(
                nn.Linear(flat, 120),
                nn.Tanh(),
                nn.Dropout(0.2),
                nn.Linear(120, 84),
                nn.Tanh(),
                nn.Linear(84, config.num_classes),
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` for images ``(B, C, H, W)`` in ``[0, 1]``."""
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
        images: ``(B, C, H, W)`` clean images.
        generator: CPU generator.

    Returns:
        ``(B, C, H, W)`` degraded images in ``[0, 1]`` (a quarter of them left clean).
    """
    b = images.shape[0]
    out = images.clone()
    choice = torch.randint(0, 4, (b,), generator=generator)
    blur = choice == 1
    if blur.any():
        kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :]) / 256.0
        picked = out[blur]
        flat = picked.reshape(-1, 1, *picked.shape[2:])  # each channel blurred on its own
        out[blur] = F.conv2d(flat, kernel[None, None], padding=2).reshape(picked.shape)
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
        data: Labelled images ``(N, C, H, W)``.
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


JUDGE_ROLES = ("labeler", "evaluator")
"""The two judges of a dataset, in the order :func:`train_judge_pair` trains them."""
JUDGE_BATCH_SIZE = 64
"""Mini-batch of each judge's training; halves under ``8 * 64`` images take ``len // 8`` (at least 4), so
every epoch makes at least 8 updates."""


def judge_recipes(seed: int = 0, epochs: int = 15) -> dict[str, ClassifierRecipe]:
    """The labeler's and the evaluator's recipes for a seed: other architecture, data half and seed each.

    Seed 0 gives the shipped digit judges' recipes (:data:`LABELER_RECIPE`, :data:`EVALUATOR_RECIPE`); seed
    ``s`` shifts both training seeds by ``1000 * s``.
    """
    shift = 1000 * int(seed)
    return {
        "labeler": ClassifierRecipe(
            LABELER_RECIPE.arch, LABELER_RECIPE.half, LABELER_RECIPE.seed + shift, epochs
        ),
        "evaluator": ClassifierRecipe(
            EVALUATOR_RECIPE.arch, EVALUATOR_RECIPE.half, EVALUATOR_RECIPE.seed + shift, epochs
        ),
    }


def accuracy(model: DigitClassifier, data: ImageSet) -> float:
    """Share of ``data`` the classifier puts in the right class (``nan`` for no images)."""
    if len(data) == 0:
        return float("nan")
    device = next(model.parameters()).device
    predicted = model.probabilities(data.images.to(device)).argmax(1).cpu()
    return float((predicted == data.labels).float().mean())


@dataclass(frozen=True)
class TrainedJudge:
    """One judge's classifier as :func:`train_judge_pair` trained it.

    Attributes:
        role: ``labeler`` or ``evaluator``.
        model: The classifier, in eval mode.
        config: Its architecture.
        recipe: Architecture, data half, seed and epochs.
        images: Training images (its half).
        accuracy: Accuracy on the held-out images (``nan`` without any).
        seconds: Training time.
    """

    role: str
    model: DigitClassifier
    config: ClassifierConfig
    recipe: ClassifierRecipe
    images: int
    accuracy: float
    seconds: float


def train_judge_pair(
    data: ImageSet,
    held_out: ImageSet | None = None,
    *,
    seed: int = 0,
    epochs: int = 15,
    width: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, TrainedJudge]:
    """Train a dataset's two judges: the labeler's and the evaluator's classifiers.

    The recipe of the shipped digit judges, for any labelled images: the labeler's ``cnn`` and the
    evaluator's ``lenet`` train on the two disjoint per-class halves of ``data`` (:func:`classifier_half`,
    halves seeded by ``HALVES_SEED + seed``) with their own seeds (:func:`judge_recipes`), so a generator
    that games one is caught by the other.

    Args:
        data: Labelled training images ``(N, C, H, W)`` (every label ``>= 0``).
        held_out: Labelled images neither trains on, to measure accuracy (``None``: not measured).
        seed: Shifts the halves and both training seeds; 0 is the shipped judges' recipe.
        epochs: Training epochs of each.
        width: Channel multiplier of both architectures.
        device: Training device.
        progress: Show progress bars.

    Returns:
        ``{"labeler": ..., "evaluator": ...}``, each a :class:`TrainedJudge`.

    Raises:
        DataError: for images without labels, or fewer than two classes.
        ConfigError: for images too large for the classifiers.
    """
    if len(data) == 0 or bool((data.labels < 0).any()):
        raise DataError(f"{data.name}: judges need labelled images (every image with a class >= 0)")
    if len(data.classes) < 2:
        raise DataError(f"{data.name}: judges need images of at least two classes, got {list(data.classes)}")
    channels, height, width_px = data.image_shape
    num_classes = max(data.classes) + 1
    trained: dict[str, TrainedJudge] = {}
    for role, recipe in judge_recipes(seed, epochs).items():
        start = time.perf_counter()
        config = ClassifierConfig(
            arch=recipe.arch,
            num_classes=num_classes,
            image_size=(height, width_px),
            width=width,
            channels=channels,
        )
        half = classifier_half(data, recipe.half, HALVES_SEED + int(seed))
        batch_size = max(4, min(JUDGE_BATCH_SIZE, len(half) // 8))  # small sets: still 8 updates an epoch
        model = train_classifier(
            half,
            config,
            epochs=recipe.epochs,
            batch_size=batch_size,
            seed=recipe.seed,
            device=device,
            progress=progress,
        )
        acc = accuracy(model, held_out) if held_out is not None else float("nan")
        trained[role] = TrainedJudge(role, model, config, recipe, len(half), acc, time.perf_counter() - start)
    return trained


def agreement(a: DigitClassifier, b: DigitClassifier, images: torch.Tensor) -> float:
    """Share of ``images`` two classifiers put in the same class (``nan`` for no images)."""
    if images.shape[0] == 0:
        return float("nan")
    pa = a.probabilities(images.to(next(a.parameters()).device)).argmax(1).cpu()
    pb = b.probabilities(images.to(next(b.parameters()).device)).argmax(1).cpu()
    return float((pa == pb).float().mean())
