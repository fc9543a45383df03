"""Reward models: ``r(noisy, output)`` — how good an output is for its noisy input. Higher is better.

Every reward model is an ``nn.Module`` with

* :meth:`RewardModel.logits` ``(B,)``: the score in logit units (trained by the objectives in
  :mod:`hfrl.rewards.objectives`);
* ``forward(noisy, output)`` ``(B,)`` in ``[0, 1]``: ``sigmoid(logits)``, with gradients — what the
  environments and agents call (the probability of *good* for good/bad models). A bounded reward leaves
  an agent less to exploit than a raw logit;
* :meth:`RewardModel.predict`: the same without gradients, batched, from tensors or arrays, to NumPy.

Architectures (:class:`RewardModelConfig`): a small CNN over the stacked (noisy, output) pair — the seed
paper's reward model sees both (arXiv 2308.00307) — or over the output alone (``inputs=("output",)``),
optionally with a frozen self-supervised denoiser inside (:mod:`hfrl.rewards.denoiser`) whose estimate of
the clean input becomes extra channels; :class:`SimilarityReward`, a logistic regression on how alike the
output and that estimate are; and the HERO embedding model in :mod:`hfrl.rewards.embedding`. Ensembles
are a wrapper (:class:`~hfrl.rewards.ensemble.RewardEnsemble`), not a flag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hfrl.data import as_images
from hfrl.errors import ConfigError, DataError
from hfrl.rewards.denoiser import STATS, SelfSupervisedDenoiser, similarity_features
from hfrl.rewards.features import CHANNELS, DENOISED_CHANNELS, PairFeatures

ARCHS = ("cnn", "similarity", "embedding")


@dataclass(frozen=True)
class RewardModelConfig:
    """Architecture of a single reward model.

    Attributes:
        arch: ``cnn`` (a CNN with a logit head), ``similarity`` (logistic regression on similarity to the
            denoised input; ``inputs`` unused) or ``embedding`` (HERO: cosine similarity to reference
            embeddings).
        inputs: Channels stacked as the CNN's input (see :data:`hfrl.rewards.features.CHANNELS`). The
            output alone by default: in ``scripts/bench_reward.py`` it agreed with the evaluator about as
            well as CNNs that also see the noisy input, which fit its noise from a few hundred labels. It
            ignores the input, though; the input-aware choices are ``("noisy", "output", "residual")``
            with the auxiliary loss, or the ``similarity`` architecture (the recommended one).
        width: Channels of the first conv layer; later layers use ``2 * width``. 16 keeps a model small
            enough to train in seconds on two CPU cores, which ensembles and the benchmark need.
        hidden: Units of the dense layer after the conv trunk.
        dropout: Dropout before the dense layer; a little regularisation for a few hundred labels.
        residual_sigma: Blur of the ``residual`` channel, in pixels.
        image_size: ``(H, W)`` of the images scored, both >= 8; the conv trunk's dense layer follows from it.
        embed_dim: Embedding size (``embedding`` only).
        num_references: Reference embeddings stored with the model (``embedding`` only).
        reference_reduce: ``max`` (similarity to the closest reference, e.g. the best sample) or ``mean``
            (to the mean reference direction), ``embedding`` only.
        channels: Channels of each image: 1 (grey) or 3 (RGB); every input in ``inputs`` brings that many.
        denoiser: Architecture (:class:`~hfrl.generators.GeneratorConfig` dict) of a frozen
            self-supervised denoiser held inside the model, its weights saved with the model; needed by
            the ``denoised`` channels and by ``similarity``. ``None``: no denoiser.
    """

    arch: str = "cnn"
    inputs: tuple[str, ...] = ("output",)
    width: int = 16
    hidden: int = 64
    dropout: float = 0.2
    residual_sigma: float = 1.0
    image_size: tuple[int, int] = field(default=(28, 28))
    embed_dim: int = 32
    num_references: int = 1
    reference_reduce: str = "max"
    denoiser: dict[str, Any] | None = None
    channels: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(
                f"unknown reward architecture {self.arch!r}; expected one of {', '.join(ARCHS)}"
            )
        inputs = tuple(self.inputs)
        if any(c not in CHANNELS for c in inputs):
            raise ConfigError(f"reward inputs must be a subset of {CHANNELS}, got {inputs}")
        object.__setattr__(self, "inputs", inputs)
        if self.denoiser is not None and not isinstance(self.denoiser, dict):
            raise ConfigError(
                f"'denoiser' must be a generator config dict, got {type(self.denoiser).__name__}"
            )
        h, w = (int(v) for v in self.image_size)
        if h < 8 or w < 8:
            raise ConfigError(f"reward models need images of at least 8x8 pixels, got {h}x{w}")
        object.__setattr__(self, "image_size", (h, w))
        if isinstance(self.channels, bool) or self.channels not in (1, 3):
            raise ConfigError(f"reward model channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        if self.width < 1 or self.hidden < 1 or self.embed_dim < 1 or self.num_references < 1:
            raise ConfigError("reward model width, hidden, embed_dim and num_references must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.reference_reduce not in ("max", "mean"):
            raise ConfigError(f"reference_reduce must be 'max' or 'mean', got {self.reference_reduce!r}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model scores."""
        return (self.channels, *self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what checkpoints store)."""
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        d["image_size"] = list(self.image_size)
        if self.denoiser is not None:
            d["denoiser"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.denoiser.items()}
        return d

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> RewardModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Raises:
            ConfigError: for unknown keys or bad values.
        """
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(config) - known)
        if extra:
            raise ConfigError(f"unknown reward model config keys {extra}")
        values = dict(config)
        if "inputs" in values:
            values["inputs"] = tuple(values["inputs"])
        if "image_size" in values:
            values["image_size"] = tuple(values["image_size"])
        return cls(**values)


class ConvTrunk(nn.Module):
    """Three conv layers down to quarter resolution, then one dense layer.

    ``(B, C, H, W) -> (B, hidden)``. Kept flat at ``H/4 x W/4`` rather than globally pooled: whether an
    output fits its input depends on *where* strokes are.
    """

    def __init__(self, in_channels: int, config: RewardModelConfig) -> None:
        super().__init__()
        w = config.width
        h4, w4 = (-(-side // 4) for side in config.image_size)  # two stride-2 convolutions round up
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1),
            nn.SiLU(),  # (B, w, H, W)
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.SiLU(),  # (B, 2w, H/2, W/2)
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.SiLU(),  # (B, 2w, H/4, W/4)
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(2 * w * h4 * w4, config.hidden),
            nn.SiLU(),  # (B, hidden)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x)


def as_pair(
    noisy: Any, output: Any, *, needs_noisy: bool = True, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert a batch of (noisy, output) images for :meth:`RewardModel.predict`.

    Args:
        noisy: ``(B, C, H, W)`` or ``(B, H, W)`` tensor or array in ``[0, 1]`` (uint8 allowed); may be
            ``None`` when ``needs_noisy`` is False.
        output: Same shape as ``noisy``.
        needs_noisy: Whether the model reads the noisy input.
        device: Where to put the tensors.

    Raises:
        DataError: for a wrong shape, dtype or range, or a missing noisy input.
    """
    out = as_images(output, name="output")
    if noisy is None:
        if needs_noisy:
            raise DataError("this reward model reads the noisy input; pass noisy images beside the outputs")
        x = torch.zeros_like(out)
    else:
        x = as_images(noisy, name="noisy")
        if x.shape != out.shape:
            raise DataError(f"noisy shape {tuple(x.shape)} does not match output shape {tuple(out.shape)}")
    return (x.to(device), out.to(device)) if device is not None else (x, out)


class RewardModel(nn.Module):
    """Base class: subclasses implement :meth:`logits`.

    Attributes:
        config: The architecture (stored in checkpoints).
        denoiser: The frozen self-supervised denoiser, or ``None``.
    """

    config: RewardModelConfig
    denoiser: nn.Module | None  # set by subclasses (a class default would hide the module)

    @property
    def uses_noisy(self) -> bool:
        """Whether the score depends on the noisy input (False for output-only models)."""
        return True

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for an empty module)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor | None:
        """The frozen denoiser's estimate ``(B, C, H, W)`` of the clean inputs, or ``None`` without one.

        Trainers compute it once per image and pass it to :meth:`logits` as ``denoised``: it depends on the
        noisy input only, and the denoiser is much larger than the reward network.
        """
        denoiser = getattr(self, "denoiser", None)
        return denoiser(noisy) if denoiser is not None else None

    def train(self, mode: bool = True) -> RewardModel:
        """Set training mode; the frozen denoiser always stays in eval mode."""
        super().train(mode)
        denoiser = getattr(self, "denoiser", None)
        if denoiser is not None:
            denoiser.eval()
        return self

    def logits(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores ``(B,)`` in logit units; higher is better.

        Args:
            noisy: ``(B, C, H, W)`` noisy inputs.
            output: ``(B, C, H, W)`` outputs.
            denoised: ``(B, C, H, W)`` :meth:`denoise` of ``noisy`` if already computed (models with a
                denoiser compute it otherwise; others ignore it).
        """
        raise NotImplementedError

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Rewards ``(B,)`` in ``[0, 1]`` (``sigmoid(logits)``), with gradients.

        Args:
            noisy: ``(B, C, H, W)`` noisy inputs on the model's device.
            output: ``(B, C, H, W)`` outputs to score.
        """
        return torch.sigmoid(self.logits(noisy, output))

    @torch.no_grad()
    def predict_th(
        self, noisy: Any, output: Any, *, batch_size: int = 1024, logits: bool = False
    ) -> torch.Tensor:
        """Rewards as a CPU tensor, without gradients, in eval mode, batched.

        Args:
            noisy: ``(B, C, H, W)`` or ``(B, H, W)`` tensor or array (``None`` for output-only models).
            output: Outputs of the same shape.
            batch_size: Images per forward pass.
            logits: Return logit-unit scores instead of rewards in ``[0, 1]``.

        Returns:
            ``(B,)`` float32.
        """
        x, o = as_pair(noisy, output, needs_noisy=self.uses_noisy)
        was_training = self.training
        self.eval()
        device = self.device
        try:
            chunks = [
                (self.logits if logits else self.forward)(xb.to(device), ob.to(device)).float().cpu()
                for xb, ob in zip(x.split(batch_size), o.split(batch_size))
            ]
        finally:
            self.train(was_training)
        return torch.cat(chunks)

    def predict(self, noisy: Any, output: Any, *, batch_size: int = 1024, logits: bool = False) -> np.ndarray:
        """:meth:`predict_th` as a NumPy ``(B,)`` float32 array."""
        return self.predict_th(noisy, output, batch_size=batch_size, logits=logits).numpy()

    def to_config(self) -> dict[str, Any]:
        """The checkpoint config that :func:`hfrl.rewards.build_reward_model` turns back into this model."""
        return self.config.to_dict()


def check_denoiser_inputs(config: RewardModelConfig) -> None:
    """Raise :class:`~hfrl.errors.ConfigError` when the model needs a denoiser the config lacks.

    Checked when a model is built rather than in the config, so that a config can name the channels
    first and :func:`hfrl.rewards.training.make_reward_model` add the trained denoiser afterwards.
    """
    if config.arch == "similarity":
        if config.denoiser is None:
            raise ConfigError(
                "the similarity reward needs a self-supervised denoiser; pass one to make_reward_model"
            )
        return
    if config.denoiser is None and any(c in DENOISED_CHANNELS for c in config.inputs):
        raise ConfigError(
            f"inputs {config.inputs} need a self-supervised denoiser; pass one to make_reward_model"
        )
    if not config.inputs:
        raise ConfigError(f"a {config.arch} reward model needs at least one input channel")


CLASSICAL_KEY = "classical"
"""Key of a reward config's ``denoiser`` dict that holds a classical denoiser's settings instead of a
network's architecture."""


def denoiser_spec(denoiser: nn.Module) -> dict[str, Any]:
    """What a reward model's config records of the label-free estimator inside it.

    Args:
        denoiser: A :class:`~hfrl.rewards.denoiser.SelfSupervisedDenoiser` (its network's architecture is
            recorded; its weights are saved with the reward model) or a
            :class:`~hfrl.classical.ClassicalDenoiser` (its settings are recorded: it has no weights).

    Raises:
        ConfigError: for any other module.
    """
    if isinstance(denoiser, SelfSupervisedDenoiser):
        return denoiser.config.to_dict()
    from hfrl.classical import ClassicalDenoiser

    if isinstance(denoiser, ClassicalDenoiser):
        return {CLASSICAL_KEY: denoiser.to_dict()}
    raise ConfigError(
        f"a reward model's estimator must be a SelfSupervisedDenoiser or a ClassicalDenoiser, got {type(denoiser).__name__}"
    )


def frozen_denoiser(config: RewardModelConfig) -> nn.Module | None:
    """The label-free estimator a config asks for, with gradients off.

    A network's weights come from a checkpoint or from :func:`hfrl.rewards.training.make_reward_model`; a
    classical denoiser (``{"classical": {...}}``) is rebuilt from its settings alone.
    """
    if config.denoiser is None:
        return None
    if CLASSICAL_KEY in config.denoiser:
        from hfrl.classical import ClassicalDenoiser

        return ClassicalDenoiser(**config.denoiser[CLASSICAL_KEY]).eval()
    denoiser = SelfSupervisedDenoiser(config.denoiser)
    for p in denoiser.parameters():
        p.requires_grad_(False)
    return denoiser.eval()


class CNNReward(RewardModel):
    """A small CNN with a logit head over chosen channels of the (noisy, output) pair.

    ``logits = head(trunk(features(noisy, output, denoised)))``, ``(B,)``.

    Args:
        config: Architecture (``arch="cnn"``).
    """

    def __init__(self, config: RewardModelConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RewardModelConfig()
        check_denoiser_inputs(c)
        self.denoiser = frozen_denoiser(c)
        self.features = PairFeatures(c.inputs, c.residual_sigma)
        self.trunk = ConvTrunk(len(c.inputs) * c.channels, c)
        self.head = nn.Linear(c.hidden, 1)

    @property
    def uses_noisy(self) -> bool:  # noqa: D102
        return self.features.uses_noisy

    def logits(  # noqa: D102
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.features.uses_denoised and denoised is None:
            denoised = self.denoise(noisy)
        return self.head(self.trunk(self.features(noisy, output, denoised))).squeeze(1)  # (B,)


class SimilarityReward(RewardModel):
    """Logistic regression on how alike an output and the self-supervised estimate of its clean input are.

    ``logits = w . standardise([SSIM, correlation, RMSE](output, denoiser(noisy))) + b``, ``(B,)``: four
    weights, so a few dozen labels fit it, and what the features measure — the same digit, structurally
    close to the clean image — is what the judges check (against the clean image, which this model never
    sees: it compares with an estimate). The standardisation is fitted label-free to the training pairs
    (:meth:`fit_stats`). Geometric augmentation and output noise change SSIM itself, so this model is
    trained without them (``augmentable = False``).

    Args:
        config: Architecture (``arch="similarity"`` and a ``denoiser``).
    """

    augmentable = False

    def __init__(self, config: RewardModelConfig) -> None:
        super().__init__()
        self.config = config
        check_denoiser_inputs(config)
        self.denoiser = frozen_denoiser(config)
        self.register_buffer("stats_mean", torch.zeros(len(STATS)))
        self.register_buffer("stats_std", torch.ones(len(STATS)))
        self.head = nn.Linear(len(STATS), 1)

    def similarity(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Standardised similarity features ``(B, 3)`` of the outputs to the denoised inputs."""
        if denoised is None:
            denoised = self.denoise(noisy)
        # standardised: SSIM differences of ~0.1 separate good from bad, too fine for a head on raw values
        # to resolve in a few hundred small optimiser steps
        return (similarity_features(output, denoised) - self.stats_mean) / self.stats_std  # type: ignore[arg-type]

    @torch.no_grad()
    def fit_stats(self, output: torch.Tensor, denoised: torch.Tensor) -> None:
        """Fit the standardisation to ``(N, C, H, W)`` training outputs and their denoised inputs."""
        f = torch.cat([similarity_features(o, d) for o, d in zip(output.split(512), denoised.split(512))])
        self.stats_mean.copy_(f.mean(0))
        self.stats_std.copy_(f.std(0).clamp(min=1e-3) if f.shape[0] > 1 else torch.ones_like(f[0]))

    def logits(  # noqa: D102
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.head(self.similarity(noisy, output, denoised)).squeeze(1)  # (B,)
