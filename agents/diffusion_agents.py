"""Online fine-tuning of a diffusion model from human feedback: one loop, four methods.

The task (HERO, Hiranaka et al. 2024, arXiv 2410.05116, on digits): the shipped DDPM ``ddpm_digits`` draws
all ten digits; a person wants *only digit k*, which it draws about one time in ten. Every round the
trainer samples a batch, asks for feedback through the :class:`~hfrl.feedback.FeedbackQueue` (people on
the labelling page, or :class:`TargetDigitLabeler` answering headless through the same store calls),
and updates the model. Success is judged by :class:`TargetDigitEvaluator`, whose classifier is
independent of the labeler's.

:class:`OnlineDiffusionTrainer` owns the loop — sampling the reverse chains on ``hfrl/DiffusionDenoise-v0``
with their log-probabilities, the feedback round trip, evaluation, logging, grids and checkpoints — and
each method writes what it asks and how it updates:

=========== ============ ==========================================================================
method      feedback     update
=========== ============ ==========================================================================
``hero``    good + best  PPO on similarity to the best in a triplet-trained embedding; noise recycling
            (:mod:`hfrl.agents.hero`)
``rwl``     good/bad     reward-weighted denoising loss + ``beta`` x pre-training loss (Lee et al. 2023)
``ddpo``    good/bad     PPO (DDPO, Black et al. 2023) on a reward model, KL to the base model (DPOK)
``d3po``    pairs        DPO on the reverse-chain steps of preferred / rejected samples (D3PO, Yang et
                         al. 2024, arXiv 2311.13231), no reward model
=========== ============ ==========================================================================

Every label counts once: a good/bad mark (``hero``, ``rwl``, ``ddpo``; HERO's best mark comes free with
them) or a pair comparison (``d3po``), so "labels used" is the same human effort across methods.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.classifiers import DigitClassifier
from hfrl.data import load_embedded_mnist
from hfrl.device import resolve_device
from hfrl.diffusion import (
    DDPM_DIGITS,
    DDPM_KIND,
    DDIMScheduler,
    Scheduler,
    UNet2D,
    denoising_error,
    initial_noise,
    load_ddpm,
    to_images,
    to_model_space,
)
from hfrl.envs.diffusion import BatchedDiffusionDenoiseEnv
from hfrl.errors import ConfigError, HfrlError
from hfrl.feedback import BAD, GOOD, HERO, LEFT, PAIR, RIGHT, SINGLE, SKIP, TIE, FeedbackQueue, simulate
from hfrl.judges import EVALUATOR_CHECKPOINT, LABELER_CHECKPOINT, asset_path
from hfrl.lora import LORA_KIND, add_lora, lora_disabled, merge_lora
from hfrl.rewards import (
    LabelledSamples,
    RewardModelConfig,
    RewardTrainingConfig,
    make_reward_model,
    save_reward_model,
    train_reward_model,
)
from hfrl.runs import make_run_dir, write_json

C = TypeVar("C", bound="OnlineDiffusionConfig")
DEFAULT_TARGET_CLASS = 7
SOURCE_ERROR_DIGITS = 256
"""Real digits whose base-model denoising error is the yardstick of :attr:`TargetReport.source_error`."""


# ---------------------------------------------------------------------------------------------------------
# The stand-ins for people on this task


class TargetDigitLabeler:
    """A simulated person who wants only digit ``k``: marks samples good/bad, picks the best, compares two.

    It has the interface :func:`hfrl.feedback.simulate` needs (``labeler_id``, ``label``, ``compare``,
    ``pick_best``) and ignores the clean images and classes (a generated sample has none). It reads the
    synthetic labeler's digit classifier (``cnn``); a sample is good when ``P(k) >= threshold``.

    Args:
        classifier: The labeler's digit classifier.
        target_class: ``k``.
        threshold: Good when the probability of ``k`` reaches it (0.5: "clearly a k").
        flip_rate: Probability that a good/bad or left/right answer is flipped (human error).
        skip_rate: Probability of answering ``skip`` (good/bad) or ``tie`` (pairs).
        tie_margin: Pairs whose probabilities of ``k`` differ by less than this are ties.
        seed: Seed of the flips and skips.
        labeler_id: Identity recorded with every label.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        target_class: int = DEFAULT_TARGET_CLASS,
        threshold: float = 0.5,
        flip_rate: float = 0.0,
        skip_rate: float = 0.0,
        tie_margin: float = 0.05,
        seed: int = 0,
        labeler_id: str = "synthetic-hero",
    ) -> None:
        if not (0.0 <= flip_rate <= 0.5 and 0.0 <= skip_rate < 1.0):
            raise ConfigError(
                f"flip_rate must be in [0, 0.5] and skip_rate in [0, 1), got {flip_rate}, {skip_rate}"
            )
        self.classifier = classifier.eval()
        self.target_class = int(target_class)
        self.threshold = float(threshold)
        self.flip_rate = float(flip_rate)
        self.skip_rate = float(skip_rate)
        self.tie_margin = float(tie_margin)
        self.rng = np.random.default_rng(seed)
        self.labeler_id = labeler_id

    @classmethod
    def from_pretrained(
        cls, target_class: int = DEFAULT_TARGET_CLASS, device: torch.device | str = "cpu", **kwargs: Any
    ) -> TargetDigitLabeler:
        """The shipped labeler classifier (``labeler_classifier``) wanting digit ``target_class``."""
        model, _ = load_checkpoint(asset_path(LABELER_CHECKPOINT), kind="classifier", device=device)
        return cls(model, target_class, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the labeler's probability of digit ``k`` for images ``(B, 1, H, W)`` in ``[0, 1]``."""
        device = next(self.classifier.parameters()).device
        return self.classifier.probabilities(images.to(device))[:, self.target_class].cpu()

    def label(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> list[str]:
        """``good`` / ``bad`` / ``skip`` per image."""
        good = (self.score(outputs) >= self.threshold).numpy()
        flips = self.rng.random(len(good)) < self.flip_rate
        skips = self.rng.random(len(good)) < self.skip_rate
        return [SKIP if s else (GOOD if (g ^ f) else BAD) for g, f, s in zip(good, flips, skips)]

    def compare(
        self, left: torch.Tensor, right: torch.Tensor, clean: Any = None, classes: Any = None
    ) -> list[str]:
        """``left`` / ``right`` / ``tie``: which of two images looks more like a ``k``."""
        pl, pr = self.score(left).numpy(), self.score(right).numpy()
        flips = self.rng.random(len(pl)) < self.flip_rate
        skips = self.rng.random(len(pl)) < self.skip_rate
        return [
            TIE if s or abs(a - b) < self.tie_margin else (LEFT if (a > b) ^ f else RIGHT)
            for a, b, f, s in zip(pl, pr, flips, skips)
        ]

    def pick_best(
        self, outputs: torch.Tensor, clean: Any = None, classes: Any = None
    ) -> tuple[list[str], int]:
        """HERO feedback: labels per image and the position of the most ``k``-like among the good ones."""
        labels = self.label(outputs)
        p = self.score(outputs).numpy()
        pool = [i for i, word in enumerate(labels) if word == GOOD] or list(range(len(labels)))
        return labels, int(max(pool, key=lambda i: p[i]))


@dataclass(frozen=True)
class TargetReport:
    """The evaluator's verdict on a batch of samples.

    Attributes:
        n: Samples judged.
        success_rate: Share the evaluator reads as digit ``k`` (most likely class ``k`` with probability
            at least ``threshold``).
        digit_rate: Share read as *some* digit with probability at least ``digit_threshold`` (source
            quality kept: still digits, not blobs).
        target_prob: Mean probability of ``k``.
        class_counts: Samples per most likely class, ``(num_classes,)``.
        diversity: How varied the samples read as ``k`` are: their mean pairwise pixel distance
            (:func:`spread`) over that of real digits ``k``. About 1: as varied as real ones; near 0: copies
            of one image (a policy that found one good sample and repeats it). ``nan`` with fewer than two
            successes or without real digits to compare with.
        source_error: How natural the samples are to the *base* DDPM: their mean
            :func:`~hfrl.diffusion.denoising_error` over that of real digits. About 1: as natural as real
            digits; 2 or more: speckle, blotches or smeared strokes that the classifiers, trained on degraded
            digits, still read as digits (reward hacking the digit rate misses). ``nan`` without a base model.
    """

    n: int
    success_rate: float
    digit_rate: float
    target_prob: float
    class_counts: tuple[int, ...]
    diversity: float = math.nan
    source_error: float = math.nan


def spread(images: torch.Tensor) -> float:
    """Mean pairwise RMS pixel distance of images ``(B, C, H, W)`` (``nan`` for fewer than two)."""
    n = images.shape[0]
    if n < 2:
        return math.nan
    flat = images.flatten(1).double()  # (B, C*H*W)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # (B, B), zero diagonal
    return float(dist.sum() / (n * (n - 1)))


class TargetDigitEvaluator:
    """The benchmark's referee for "only digit k": the independent evaluator classifier (``lenet``).

    Args:
        classifier: The evaluator's digit classifier (other architecture, data half and seed than the
            labeler's).
        target_class: ``k``.
        threshold: Success needs ``argmax = k`` and ``P(k) >= threshold``.
        digit_threshold: A sample still is a digit when its most likely class has at least this probability.
        reference: Real digits ``k`` ``(N, 1, H, W)``, the yardstick of :attr:`TargetReport.diversity`.
        base: The DDPM before fine-tuning, whose :func:`~hfrl.diffusion.denoising_error` gives
            :attr:`TargetReport.source_error` (kept frozen; ``None``: not measured).
        real_digits: Real digits of every class ``(M, 1, H, W)``, the yardstick of that error.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        target_class: int = DEFAULT_TARGET_CLASS,
        threshold: float = 0.5,
        digit_threshold: float = 0.5,
        reference: torch.Tensor | None = None,
        base: UNet2D | None = None,
        real_digits: torch.Tensor | None = None,
    ) -> None:
        self.classifier = classifier.eval()
        self.target_class = int(target_class)
        self.threshold = float(threshold)
        self.digit_threshold = float(digit_threshold)
        self.reference_spread = spread(reference) if reference is not None else math.nan
        self.base = base.eval().requires_grad_(False) if base is not None else None
        self.real_error = (
            float(denoising_error(self.base, real_digits).mean())
            if self.base is not None and real_digits is not None and len(real_digits)
            else math.nan
        )

    @classmethod
    def from_pretrained(
        cls, target_class: int = DEFAULT_TARGET_CLASS, device: torch.device | str = "cpu", **kwargs: Any
    ) -> TargetDigitEvaluator:
        """The shipped evaluator classifier (``evaluator_classifier``) judging digit ``target_class``.

        Diversity is measured against the embedded MNIST digits ``target_class`` unless ``reference`` is given,
        and the source error with the shipped all-digits DDPM on 256 embedded digits unless ``base`` and
        ``real_digits`` are given (``base=None`` turns it off).
        """
        model, _ = load_checkpoint(asset_path(EVALUATOR_CHECKPOINT), kind="classifier", device=device)
        digits = load_embedded_mnist()
        kwargs.setdefault("reference", digits.images[digits.labels == target_class])
        if "base" not in kwargs:
            kwargs["base"] = load_ddpm(DDPM_DIGITS, device=device)
        kwargs.setdefault("real_digits", digits.images[:SOURCE_ERROR_DIGITS])
        return cls(model, target_class, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def success(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the evaluator reads digit ``k``."""
        device = next(self.classifier.parameters()).device
        probs = self.classifier.probabilities(images.to(device)).cpu()
        return (probs.argmax(1) == self.target_class) & (probs[:, self.target_class] >= self.threshold)

    @torch.no_grad()
    def report(self, images: torch.Tensor) -> TargetReport:
        """Judge images ``(B, 1, H, W)`` in ``[0, 1]``."""
        device = next(self.classifier.parameters()).device
        probs = self.classifier.probabilities(images.to(device)).cpu()  # (B, classes)
        top, cls = probs.max(1)
        k = self.target_class
        ok = (cls == k) & (probs[:, k] >= self.threshold)
        return TargetReport(
            n=int(images.shape[0]),
            success_rate=float(ok.float().mean()),
            digit_rate=float((top >= self.digit_threshold).float().mean()),
            target_prob=float(probs[:, k].mean()),
            class_counts=tuple(int(c) for c in torch.bincount(cls, minlength=probs.shape[1])),
            diversity=spread(images.cpu()[ok]) / self.reference_spread,
            source_error=self.source_error(images),
        )

    def source_error(self, images: torch.Tensor) -> float:
        """:attr:`TargetReport.source_error` of images ``(B, 1, H, W)`` (``nan`` without a base model)."""
        if self.base is None or not math.isfinite(self.real_error) or images.shape[0] == 0:
            return math.nan
        return float(denoising_error(self.base, images).mean()) / self.real_error


# ---------------------------------------------------------------------------------------------------------
# Reverse chains on hfrl/DiffusionDenoise-v0


@dataclass(frozen=True)
class Trajectories:
    """A batch of sampled reverse chains, everything an update needs.

    Attributes:
        noise: ``(B, C, H, W)`` the initial noise ``x_T``.
        states: ``(N, B, C, H, W)`` ``x_t`` before each of the ``N`` steps.
        actions: ``(N, B, C, H, W)`` the sample each step drew, ``x_{t-1}``.
        log_probs: ``(N, B)`` their log-probabilities under the sampling model.
        timesteps: ``(N,)`` int64 diffusion timesteps of the steps.
        images: ``(B, C, H, W)`` final samples in ``[0, 1]`` (CPU).
    """

    noise: torch.Tensor
    states: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    images: torch.Tensor

    def __len__(self) -> int:
        return int(self.noise.shape[0])


# ---------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class OnlineDiffusionConfig:
    """What every online diffusion method shares. Field names are what the CLI and benchmarks set."""

    # -- the task --------------------------------------------------------------------------------------
    target_class: int = DEFAULT_TARGET_CLASS
    """The digit ``k`` people want (the base model draws it ~10 % of the time)."""
    ddpm: str = DDPM_DIGITS
    """DDPM to fine-tune: a shipped asset name or a checkpoint path (default: all digits)."""
    rounds: int = 10
    """Feedback rounds: sample a batch, ask for feedback, update."""
    batch_size: int = 64
    """Samples generated and put to labelers per round (``d3po``: half as many pairs)."""

    # -- sampling --------------------------------------------------------------------------------------
    num_inference_steps: int = 10
    """DDIM steps per chain (the environment's episode length). 10 keeps CPU rounds to seconds; the
    shipped model's samples are about as often digits as at 20."""
    eta: float = 1.0
    """DDIM stochasticity; every step needs a non-zero variance for its log-probability (DDPO uses 1)."""

    # -- the policy update -----------------------------------------------------------------------------
    adapter: str = "full"
    """What trains: ``full`` (every weight of the DDPM) or ``lora`` (the DDPM frozen, low-rank adapters on
    its convolutions and linear layers, :mod:`hfrl.lora`; the run directory then also keeps the adapters
    alone, ``adapters.*``: 0.5 MB at rank 8 beside the 2.7 MB model, whose layers are only 16-64 wide)."""
    lora_rank: int = 8
    """Rank ``r`` of the LoRA adapters (HERO's tuning: rank 4 barely moved at lr 1e-3 to 3e-3, see
    :class:`~hfrl.agents.hero.HeroConfig`)."""
    lora_alpha: float | None = None
    """LoRA scale numerator: updates are ``alpha / r`` times the low-rank product (default ``r``)."""
    lr: float = 3e-4
    """AdamW learning rate of the diffusion model (full fine-tune). Tuned on seed 0, digit 7 (success on
    128 fresh-noise samples, base 7.8 %): after 256 labels HERO (64 a round) 13.3 % at 1e-4 and 31.2 % at
    3e-4, while 1e-3 collapsed to 0 % after 64; DDPO 33.6 % at 3e-4 (21.1 % after 512 labels at 1e-4).
    (1e-5 was ten times slower than 1e-4.) RWL and D3PO keep 1e-4 (see theirs)."""
    policy_epochs: int = 2
    """Passes over each round's samples."""
    minibatch_size: int = 32
    """Samples per gradient step; the gradient is accumulated over the chain's steps."""
    clip_range: float = 0.2
    """Clip of the per-step probability ratio (PPO, D3PO). Step log-probabilities sum over 784 pixels, so
    ratios move fast (DDPO clips at 1e-4 for Stable Diffusion)."""
    min_step_std: float = 0.05
    """Steps whose Gaussian is narrower than this (in ``[-1, 1]`` units) are not trained: the last steps of a
    short chain (std ~0.01) only clean up a finished image, and their log-ratios explode (a step of
    lr 1e-5 moved them 100x more than the others)."""
    kl: float = 0.0
    """Weight of the per-step KL to the frozen base model (DPOK, Fan et al. 2023); 0 = off."""
    target_kl: float | None = None
    """Early stop of a round's PPO update (as Stable-Baselines3's ``target_kl``): once a minibatch's mean
    per-step approximate KL between the model and the round's sampling policy passes ``1.5 * target_kl``,
    its gradient is dropped and the round's remaining epochs are skipped. ``None``: every epoch runs. The
    KL sums over the image's pixels, so values near 1 are common here (a round's first Adam step alone moves
    full fine-tuning by ~1); a blown-up update reads 5 or more."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping."""

    # -- the reward model (hero, rwl, ddpo) ------------------------------------------------------------
    reward_steps: int = 60
    """Reward-model training steps per round, on all labels so far (warm-started from the last round)."""
    reward_batch_size: int = 32
    """Labelled samples (HERO: triplets) per reward-model step."""
    reward_lr: float = 3e-3
    """Reward-model learning rate."""
    reward_width: int = 16
    """Channels of the reward network's first layer. It sees the sample alone: a generated sample has no
    noisy input."""

    # -- the synthetic labeler -------------------------------------------------------------------------
    labeler_threshold: float = 0.5
    """The synthetic labeler calls a sample good when its classifier gives ``k`` at least this probability."""
    flip_rate: float = 0.0
    """Share of the synthetic labeler's answers flipped (human error)."""
    skip_rate: float = 0.0
    """Share of the synthetic labeler's answers skipped."""

    # -- evaluation and bookkeeping --------------------------------------------------------------------
    eval_samples: int = 128
    """Samples from fixed fresh noise judged by the evaluator after every round (0: only at the end)."""
    eval_every: int = 1
    """Evaluate every this many rounds (and after the last)."""
    label_timeout: float | None = None
    """Seconds to wait for people per round (``None``: forever)."""
    seed: int = 0
    """Seed of initial noise, sampling, updates and the synthetic labeler."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""

    def __post_init__(self) -> None:
        positive = {
            "rounds": self.rounds, "batch_size": self.batch_size, "num_inference_steps": self.num_inference_steps,
            "policy_epochs": self.policy_epochs, "minibatch_size": self.minibatch_size, "eval_every": self.eval_every,
            "reward_batch_size": self.reward_batch_size,
        }  # fmt: skip
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if not 0 <= int(self.target_class) <= 9:
            raise ConfigError(f"target_class must be a digit 0-9, got {self.target_class}")
        if not 0.0 < self.eta <= 1.0:
            raise ConfigError(
                f"eta must be in (0, 1] (log-probabilities need stochastic steps), got {self.eta}"
            )
        if self.lr <= 0 or self.reward_lr <= 0:
            raise ConfigError(f"lr and reward_lr must be > 0, got {self.lr}, {self.reward_lr}")
        if not 0.0 < self.clip_range < 1.0:
            raise ConfigError(f"clip_range must be in (0, 1), got {self.clip_range}")
        if self.min_step_std < 0:
            raise ConfigError(f"min_step_std must be >= 0, got {self.min_step_std}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ConfigError(f"target_kl must be > 0 (or None), got {self.target_kl}")
        if self.kl < 0 or self.max_grad_norm <= 0 or self.reward_steps < 0 or self.eval_samples < 0:
            raise ConfigError("kl, reward_steps and eval_samples must be >= 0 and max_grad_norm > 0")
        if not 0.0 < self.labeler_threshold < 1.0:
            raise ConfigError(f"labeler_threshold must be in (0, 1), got {self.labeler_threshold}")
        if not (0.0 <= self.flip_rate <= 0.5 and 0.0 <= self.skip_rate < 1.0):
            raise ConfigError(
                f"flip_rate must be in [0, 0.5] and skip_rate in [0, 1), got {self.flip_rate}, {self.skip_rate}"
            )
        if self.adapter not in ("full", "lora"):
            raise ConfigError(f"adapter must be 'full' or 'lora', got {self.adapter!r}")
        if self.lora_rank < 1 or (self.lora_alpha is not None and self.lora_alpha <= 0):
            raise ConfigError(
                f"lora_rank must be >= 1 and lora_alpha > 0, got {self.lora_rank}, {self.lora_alpha}"
            )
        if self.label_timeout is not None and self.label_timeout <= 0:
            raise ConfigError(f"label_timeout must be > 0 seconds, got {self.label_timeout}")

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """The config with ``values`` set by name.

        Raises:
            ConfigError: for an unknown name or a bad value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields {unknown}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


@dataclass
class OnlineResult:
    """What :meth:`OnlineDiffusionTrainer.train` returns.

    Attributes:
        history: One row per round (round 0 = before any update): ``labels_used``, ``success_rate``,
            ``digit_rate``, the batch's good rate and the update's metrics.
        final: The final evaluation (also in ``evaluation.json``).
        run_dir: Where everything was written.
        seconds: Wall time.
    """

    history: list[dict[str, float]]
    final: dict[str, Any]
    run_dir: Path
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------------------
# The loop


class OnlineDiffusionTrainer:
    """Rounds of sample -> feedback -> update for a DDPM; subclasses write the feedback kind and the update.

    A run directory holds ``config.json``, ``rounds.csv`` (per round: labels used, the evaluator's
    success and digit rates on fixed fresh noise, the labeler's good rate in the round's batch, update
    metrics), ``grids/round_RRR.png`` (the round's batch: good framed green, best blue), ``model.*``
    (the fine-tuned DDPM, loads with :func:`hfrl.diffusion.load_ddpm`), ``adapters.*`` (with
    ``adapter="lora"``: the LoRA adapters alone, for :func:`hfrl.lora.attach_lora`), ``reward.*`` (the reward model, if
    any), ``feedback.sqlite`` and ``evaluation.json``. Runs are not resumable: a round takes seconds and
    every label stays in the feedback database.

    Args:
        config: The method's config.
        run_dir: The run directory (default ``runs/hero-METHOD-TIMESTAMP``).
        labeler: Who answers: a synthetic labeler (default: :class:`TargetDigitLabeler` on the shipped
            classifier), or ``None`` to wait for people on the labelling page serving ``db``.
        db: The feedback database (default ``RUN_DIR/feedback.sqlite``).
        evaluator: The referee (default: :class:`TargetDigitEvaluator` on the shipped classifier, its source
            error measured with a frozen copy of the starting model).
        model: Start from this DDPM instead of ``config.ddpm`` (trained in place; with ``adapter="lora"``
            its layers are wrapped in adapters in place).
        progress: Called with each round's row after it is logged (e.g. to print it).
        stop: Set it from another thread to stop after the current round.
    """

    name: ClassVar[str] = "base"
    feedback_kind: ClassVar[str] = SINGLE
    config_class: ClassVar[type[OnlineDiffusionConfig]] = OnlineDiffusionConfig

    def __init__(
        self,
        config: OnlineDiffusionConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        labeler: TargetDigitLabeler | None | str = "synthetic",
        db: str | Path | None = None,
        evaluator: TargetDigitEvaluator | None = None,
        model: UNet2D | None = None,
        progress: Callable[[dict[str, float]], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(self.config).__name__}"
            )
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.model = model.to(self.device) if model is not None else load_ddpm(cfg.ddpm, device=self.device)
        # The pretrained model, frozen before any adapter or update: the evaluator's source error and,
        # for full fine-tuning, the KL's base model (with adapters the KL switches them off instead).
        base = copy.deepcopy(self.model).eval().requires_grad_(False)
        # The model is the policy: it acts (rollouts) and is updated in eval mode alike, so a model with
        # dropout gives the same log-probabilities in both and PPO's ratio starts at exactly 1.
        self.model.requires_grad_(True).eval()
        self.adapters = (
            add_lora(self.model, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed + 40_009)
            if cfg.adapter == "lora"
            else None
        )
        self.reference: UNet2D | None = base if cfg.kl > 0 and self.adapters is None else None
        self.scheduler: Scheduler = DDIMScheduler(self.model.schedule, cfg.num_inference_steps, eta=cfg.eta)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.labeler = (
            TargetDigitLabeler.from_pretrained(
                cfg.target_class,
                device=self.device,
                threshold=cfg.labeler_threshold,
                flip_rate=cfg.flip_rate,
                skip_rate=cfg.skip_rate,
                seed=cfg.seed,
            )  # fmt: skip
            if labeler == "synthetic"
            else labeler
        )
        self.evaluator = evaluator or TargetDigitEvaluator.from_pretrained(
            cfg.target_class, device=self.device, base=base
        )
        self.run_dir = make_run_dir(run_dir, f"hero-{self.name}")
        self.db = Path(db) if db is not None else self.run_dir / "feedback.sqlite"
        self.progress = progress
        self.stop = stop
        self.labels_used = 0
        self.round = 0
        self._envs: dict[int, BatchedDiffusionDenoiseEnv] = {}
        self.eval_noise = initial_noise(
            cfg.eval_samples, self.image_shape, torch.Generator().manual_seed(cfg.seed + 10_007)
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the model's samples."""
        return (self.model.config.in_channels, *self.model.config.image_size)

    # -- what methods provide --------------------------------------------------------------------------

    def initial_noise(self, num: int) -> torch.Tensor:
        """``x_T`` of a round's batch, ``(num, C, H, W)`` (default ``N(0, I)`` from the trainer's generator)."""
        return initial_noise(num, self.image_shape, self.rng)

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:
        """Learn from one round's samples and feedback; returns metrics named ``group/name``."""
        raise NotImplementedError

    def eval_noises(self) -> dict[str, torch.Tensor]:
        """The noise sets evaluated after a round, by metric suffix (``""``: fixed fresh noise)."""
        return {"": self.eval_noise}

    def save_extra(self) -> None:
        """Write method-specific checkpoints (e.g. the reward model) into the run directory."""

    # -- sampling --------------------------------------------------------------------------------------

    def _env(self, num: int) -> BatchedDiffusionDenoiseEnv:
        if num not in self._envs:
            self._envs[num] = BatchedDiffusionDenoiseEnv(
                num, reward=None, ddpm=self.model, num_inference_steps=self.config.num_inference_steps,
                evaluate=False, device=self.device,
            )  # fmt: skip
        return self._envs[num]

    @torch.no_grad()
    def rollout(self, noise: torch.Tensor, generator: torch.Generator | None = None) -> Trajectories:
        """Run the reverse chains from ``noise`` ``(B, C, H, W)`` as episodes of ``hfrl/DiffusionDenoise-v0``.

        The model is the policy: each step's action is a draw from the scheduler's Gaussian, whose
        log-probability is kept for the update. The model runs in eval mode, as in the updates.
        """
        gen = generator if generator is not None else self.rng
        env = self._env(noise.shape[0])
        obs, _ = env.reset_torch(options={"initial_noise": noise})
        states, actions, log_probs = [], [], []
        self.model.eval()  # as in the updates (see __init__)
        while True:
            x, t = obs["x_t"], int(obs["t"][0])
            out = self.scheduler.step(self.model(x, t), t, x, generator=gen)
            states.append(x)
            actions.append(out.prev_sample)
            log_probs.append(out.log_prob)
            obs, _, terminated, _, info = env.step_torch(out.prev_sample)
            if bool(terminated[0]):
                final = info["final_obs"]["x_t"]
                break
        return Trajectories(
            noise=noise.to(self.device),
            states=torch.stack(states),
            actions=torch.stack(actions),
            log_probs=torch.stack(log_probs),
            timesteps=self.scheduler.timesteps.clone(),
            images=to_images(final).cpu(),
        )

    def with_unlabelled(self, traj: Trajectories, num: int) -> Trajectories:
        """``traj`` plus ``num`` more chains from :meth:`initial_noise`, for a reward model to score unlabelled.

        A learned reward generalises past the samples people marked; PPO on more samples per round costs
        sampling time, not labels.
        """
        return concat_trajectories(traj, self.rollout(self.initial_noise(num))) if num else traj

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, seed: int) -> torch.Tensor:
        """Images ``(B, C, H, W)`` from ``noise`` with sampling randomness from ``seed`` (evaluation)."""
        gen = torch.Generator().manual_seed(seed)
        out = [self.rollout(chunk, gen).images for chunk in noise.split(256)]
        return torch.cat(out) if out else torch.zeros(0, *self.image_shape)

    def trained_steps(self) -> list[int]:
        """Indices of the chain's steps the policy updates train on (std at least ``min_step_std``)."""
        if not hasattr(self, "_trained_steps"):
            dummy = torch.zeros(1, *self.image_shape, device=self.device)
            keep = []
            for j, t in enumerate(self.scheduler.timesteps.tolist()):
                std = float(self.scheduler.step(dummy, int(t), dummy, prev_sample=dummy).std[0])
                if std >= self.config.min_step_std:
                    keep.append(j)
            if not keep:
                raise ConfigError(f"no sampler step has std >= min_step_std={self.config.min_step_std}")
            self._trained_steps = keep
        return self._trained_steps

    def step_log_prob(
        self, model: nn.Module, x: torch.Tensor, t: int, prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob (B,), mean, std (B,))`` of stored step ``x -> prev`` under ``model`` (in eval mode)."""
        model.eval()  # the mode the step was taken in (rollout), so unchanged weights give ratio 1
        out = self.scheduler.step(model(x, t), t, x, prev_sample=prev)
        return out.log_prob, out.mean, out.std

    def kl_to_reference(self, x: torch.Tensor, t: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """``(B,)`` closed-form KL between this step's Gaussian and the base model's (same variance)."""
        with torch.no_grad():
            if self.reference is not None:
                eps = self.reference(x, t)
            else:
                with lora_disabled(self.model):
                    eps = self.model(x, t)
            ref = self.scheduler.step(eps, t, x, prev_sample=x).mean
        return ((mean - ref) ** 2).flatten(1).sum(1) / (2.0 * std.clamp(min=1e-8) ** 2)

    def optimize(
        self, loss_fn: Callable[[], torch.Tensor], accept: Callable[[], bool] | None = None
    ) -> float | None:
        """One optimiser step on a loss whose gradient ``loss_fn`` accumulates; returns the grad norm.

        Args:
            loss_fn: Accumulates the gradient (``backward``) and returns the loss.
            accept: Asked after ``loss_fn``; ``False`` drops the gradient without a step (returns ``None``).

        Raises:
            HfrlError: for a non-finite gradient (the step is skipped and training stops).
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss_fn()
        if accept is not None and not accept():
            self.optimizer.zero_grad(set_to_none=True)
            return None
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm))
        if not math.isfinite(norm):
            raise HfrlError(f"{self.name}: non-finite gradient in round {self.round}; lower lr or clip_range")
        self.optimizer.step()
        return norm

    def ppo_update(self, traj: Trajectories, advantages: torch.Tensor) -> dict[str, float]:
        """PPO-clip over the chain's steps (DDPO, Black et al. 2023), with the DPOK KL when ``kl > 0``.

        Args:
            traj: The round's chains.
            advantages: ``(B,)`` per-sample advantages (normalised rewards).
        """
        cfg = self.config
        batch = traj.log_probs.shape[1]
        steps = self.trained_steps()
        n_steps = len(steps)
        adv = advantages.to(self.device).float()
        clip_fracs: list[float] = []
        approx_kls: list[float] = []
        kls: list[float] = []
        losses: list[float] = []
        limit = math.inf if cfg.target_kl is None else 1.5 * cfg.target_kl
        updates, stopped = 0, False

        def within_limit() -> bool:
            # approx_kls[-n_steps:] are this minibatch's steps, measured before its update
            return _mean(approx_kls[-n_steps:]) <= limit

        for _ in range(cfg.policy_epochs):
            if stopped:
                break
            perm = torch.randperm(batch, generator=self.rng).to(self.device)
            for idx in perm.split(cfg.minibatch_size):

                def loss_fn(idx: torch.Tensor = idx) -> torch.Tensor:
                    total = torch.zeros((), device=self.device)
                    for j in steps:
                        t = int(traj.timesteps[j])
                        x, prev = traj.states[j, idx], traj.actions[j, idx]
                        logp, mean, std = self.step_log_prob(self.model, x, t, prev)
                        log_ratio = logp - traj.log_probs[j, idx]
                        ratio = log_ratio.exp()
                        a = adv[idx]
                        pg = torch.max(
                            -a * ratio, -a * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
                        ).mean()
                        loss = pg
                        if cfg.kl > 0:
                            kl = self.kl_to_reference(x, t, mean, std).mean()
                            loss = loss + cfg.kl * kl
                            kls.append(float(kl.detach()))
                        (loss / n_steps).backward()
                        total = total + loss.detach() / n_steps
                        with torch.no_grad():
                            approx_kls.append(float(((ratio - 1) - log_ratio).mean()))
                            clip_fracs.append(float(((ratio - 1).abs() > cfg.clip_range).float().mean()))
                    losses.append(float(total))
                    return total

                if self.optimize(loss_fn, within_limit) is None:
                    stopped = True
                    break
                updates += 1
        out = {
            "losses/policy": _mean(losses),
            "charts/ppo_samples": float(batch),
            "charts/ppo_updates": float(updates),
            "charts/ppo_stopped": float(stopped),
            "charts/approx_kl": _mean(approx_kls),
            "charts/clip_fraction": _mean(clip_fracs),
        }
        if kls:
            out["charts/kl_ref"] = _mean(kls)
        return out

    def learned_reward_ppo(
        self, traj: Trajectories, score: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict[str, float]:
        """PPO against a learned reward: ``inner_rounds`` updates (:class:`LearnedRewardPPOConfig`).

        Args:
            traj: The round's labelled chains (``extra_samples`` unlabelled ones are added).
            score: Learned reward of images ``(N, 1, H, W)`` -> ``(N,)``.

        Returns:
            The PPO metrics (updates and samples summed over the inner rounds, the rest averaged), the
            reward's mean and std on the first batch and ``reward/last_mean`` on the last.
        """
        cfg = self.config
        assert isinstance(cfg, LearnedRewardPPOConfig)
        runs: list[dict[str, float]] = []
        rewards: list[torch.Tensor] = []
        for i in range(cfg.inner_rounds):
            if i == 0:
                batch = self.with_unlabelled(traj, cfg.extra_samples)
            else:
                batch = self.rollout(self.initial_noise(traj.images.shape[0] + cfg.extra_samples))
            with torch.no_grad():
                r = score(batch.images).to(self.device).float()
            rewards.append(r)
            runs.append(self.ppo_update(batch, normalised(r, cfg.min_reward_std)))
        summed = ("charts/ppo_samples", "charts/ppo_updates")
        out = {k: (sum if k in summed else _mean)([run[k] for run in runs if k in run]) for k in runs[0]}
        out["charts/ppo_stopped"] = max(run["charts/ppo_stopped"] for run in runs)
        return out | {
            "reward/mean": float(rewards[0].mean()),
            "reward/std": float(rewards[0].std()),
            "reward/last_mean": float(rewards[-1].mean()),
        }

    # -- feedback --------------------------------------------------------------------------------------

    def ask(self, kind: str, images: torch.Tensor, others: torch.Tensor | None = None) -> Any:
        """Put samples to labelers through the feedback queue and wait for the answers.

        With a synthetic labeler the query is answered through :func:`hfrl.feedback.simulate` (the store
        calls of the labelling page); without one, this waits for people. A generated sample has no clean
        reference: the sample itself fills that slot and the noisy-input slot (the page shows it twice).

        Args:
            kind: ``single``, ``hero`` or ``pair``.
            images: ``(B, 1, H, W)`` samples (the left ones for pairs).
            others: ``(B, 1, H, W)`` the right samples (pairs only).

        Returns:
            The :class:`~hfrl.feedback.QueryResult`.
        """
        notes = {
            HERO: f"mark each sample good if it is a clear {self.config.target_class}, bad otherwise; mark the best one",
            SINGLE: f"good = a clear {self.config.target_class}, bad = anything else",
            PAIR: f"which looks more like a {self.config.target_class}?",
        }
        with FeedbackQueue(self.db) as queue:
            common = dict(
                round=self.round,
                checkpoint=f"{self.name}-round-{self.round}",
                domain="hero",
                note=notes[kind],
            )
            if kind == PAIR:
                assert others is not None
                qid = queue.enqueue_pairs(images, images, others, clean=images, **common)  # type: ignore[arg-type]
            else:
                qid = queue.enqueue(images, images, kind=kind, clean=images, **common)  # type: ignore[arg-type]
            if self.labeler is not None:
                simulate(queue.store, self.labeler, kind=kind, batch_size=max(16, images.shape[0]))
            result = queue.wait(qid, timeout=self.config.label_timeout)
        self.labels_used += sum(word is not None for word in result.labels)
        return result

    # -- evaluation and bookkeeping --------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """The evaluator's rates on each of :meth:`eval_noises` (fixed sampling seed), as metrics."""
        out: dict[str, float] = {}
        for suffix, noise in self.eval_noises().items():
            if noise.shape[0] == 0:
                continue
            images = self.sample(noise, self.config.seed + 20_011)
            report = self.evaluator.report(images)
            tag = f"_{suffix}" if suffix else ""
            out[f"success_rate{tag}"] = report.success_rate
            out[f"digit_rate{tag}"] = report.digit_rate
            out[f"target_prob{tag}"] = report.target_prob
            out[f"diversity{tag}"] = report.diversity
            out[f"source_error{tag}"] = report.source_error
            if not suffix:
                self._last_eval_images = images
                self._last_eval_counts = report.class_counts
        return out

    def save_model(self) -> Path:
        """Write the fine-tuned DDPM as ``RUN_DIR/model`` (loads with :func:`hfrl.diffusion.load_ddpm`)."""
        meta = {
            "method": self.name,
            "round": self.round,
            "labels_used": self.labels_used,
            "base": self.config.ddpm,
        }
        model = self.model
        if self.adapters is not None:
            save_checkpoint(
                self.run_dir / "adapters", self.adapters, kind=LORA_KIND, config=self.adapters.config_dict(),
                metadata=meta,
            )  # fmt: skip
            model = merge_lora(self.model)
        return save_checkpoint(
            self.run_dir / "model", model, kind=DDPM_KIND, config=self.model.config_dict(), metadata=meta
        )

    def train(self) -> OnlineResult:
        """Run every round; returns the per-round history and the final evaluation.

        Raises:
            FeedbackTimeoutError: when people do not answer within ``label_timeout``.
        """
        cfg = self.config
        start = time.perf_counter()
        write_json(self.run_dir / "config.json", {"method": self.name, **cfg.to_dict()})
        (self.run_dir / "grids").mkdir(exist_ok=True)
        history: list[dict[str, float]] = []
        initial = self.evaluate() if cfg.eval_samples else {}

        def log(row: dict[str, float]) -> None:
            history.append(row)
            write_rows(self.run_dir / "rounds.csv", history)
            if self.progress is not None:
                self.progress(row)

        log({"round": 0.0, "labels_used": 0.0, **initial})
        for r in range(1, cfg.rounds + 1):
            self.round = r
            t0 = time.perf_counter()
            traj = self.rollout(self.initial_noise(cfg.batch_size))
            t1 = time.perf_counter()
            feedback, batch = self.collect(traj)
            t2 = time.perf_counter()
            metrics = self.update(traj, feedback)
            t3 = time.perf_counter()
            self._save_grid(traj.images, batch, self.run_dir / "grids" / f"round_{r:03d}.png")
            evaluated = cfg.eval_samples and (r % cfg.eval_every == 0 or r == cfg.rounds)
            scores = self.evaluate() if evaluated else {}
            row = {
                "round": float(r), "labels_used": float(self.labels_used),
                **{k: float("nan") for k in initial}, **scores,
                "batch/good_rate": batch["good_rate"], "batch/success_rate": float(self.evaluator.success(traj.images).float().mean()),
                "seconds/sample": t1 - t0, "seconds/feedback": t2 - t1, "seconds/update": t3 - t2,
                "seconds/total": time.perf_counter() - start,
                **metrics,
            }  # fmt: skip
            log(row)
            self.save_model()
            if self.stop is not None and self.stop.is_set():
                break

        final_scores = self.evaluate() if cfg.eval_samples else {}
        final = {
            "method": self.name, "target_class": cfg.target_class, "rounds": self.round,
            "labels_used": self.labels_used, "before": initial, "after": final_scores,
            "class_counts_after": list(getattr(self, "_last_eval_counts", ())),
            "seconds": time.perf_counter() - start, "device": str(self.device),
        }  # fmt: skip
        self.save_model()
        self.save_extra()
        if cfg.eval_samples:
            self._save_grid(self._last_eval_images[:64], None, self.run_dir / "samples_after.png")
        write_json(self.run_dir / "evaluation.json", final)  # last: the run's "done" marker
        return OnlineResult(history, final, self.run_dir, time.perf_counter() - start)

    def collect(self, traj: Trajectories) -> tuple[Any, dict[str, Any]]:
        """Ask for this method's kind of feedback on a round's batch.

        Returns:
            ``(feedback, batch)``: what :meth:`update` takes, and ``{"good": (B,) bool, "best": int | None,
            "good_rate": float}`` for the grid and the log.
        """
        result = self.ask(self.feedback_kind, traj.images)
        good = torch.tensor([w == GOOD for w in result.labels])
        answered = torch.tensor([w in (GOOD, BAD) for w in result.labels])
        rate = float(good.sum() / answered.sum().clamp(min=1))
        return result, {"good": good, "best": result.best, "good_rate": rate}

    def _save_grid(self, images: torch.Tensor, batch: dict[str, Any] | None, path: Path) -> Path:
        from torchvision.utils import make_grid, save_image

        rgb = F.pad(images.repeat(1, 3, 1, 1), (1, 1, 1, 1), value=0.0)  # (B, 3, H + 2, W + 2)
        if batch is not None:
            marks = [(batch.get("good"), (0.0, 1.0, 0.0))]
            if batch.get("best") is not None:
                best = torch.zeros(images.shape[0], dtype=torch.bool)
                best[int(batch["best"])] = True
                marks.append((best, (0.2, 0.4, 1.0)))
            for mask, colour in marks:
                if mask is None or not bool(mask.any()):
                    continue
                for c, v in enumerate(colour):
                    rgb[mask, c, 0, :] = rgb[mask, c, -1, :] = v
                    rgb[mask, c, :, 0] = rgb[mask, c, :, -1] = v
        grid = make_grid(rgb, nrow=min(16, images.shape[0]), padding=1, pad_value=0.3)
        save_image(grid.repeat_interleave(2, 1).repeat_interleave(2, 2), str(path))
        return path


def write_rows(path: Path, rows: list[dict[str, float]]) -> Path:
    """Write rows as CSV with the union of their columns (first-seen order); missing cells are empty."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return path


def _cell(value: float) -> Any:
    return "" if isinstance(value, float) and not math.isfinite(value) else value


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def normalised(values: torch.Tensor, min_std: float = 0.0) -> torch.Tensor:
    """``(values - mean) / max(std, min_std)`` of a batch (zeros when all are equal)."""
    std = values.std() if values.numel() > 1 else torch.zeros(())
    if float(std) <= 1e-8:
        return torch.zeros_like(values)
    return (values - values.mean()) / std.clamp(min=min_std)


# ---------------------------------------------------------------------------------------------------------
# Baselines


class LabelPool:
    """Every good/bad label so far, as reward-model training data (samples in ``[0, 1]``)."""

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []
        self.labels: list[float] = []

    def add(self, images: torch.Tensor, words: list[str | None]) -> None:
        """Keep the answered samples of one query (skips left out)."""
        for image, word in zip(images, words):
            if word in (GOOD, BAD):
                self.images.append(image.cpu())
                self.labels.append(1.0 if word == GOOD else 0.0)

    @property
    def trainable(self) -> bool:
        """Whether both classes are present."""
        return 0 < sum(self.labels) < len(self.labels)

    def samples(self) -> LabelledSamples:
        """The labels as :class:`~hfrl.rewards.LabelledSamples` (the output stands in for the input)."""
        x = torch.stack(self.images)
        return LabelledSamples(x, x, torch.tensor(self.labels))


class BinaryRewardMixin:
    """A CNN reward model on all good/bad labels so far, retrained (warm) each round."""

    config: Any
    device: torch.device
    run_dir: Path

    def _init_reward(self) -> None:
        cfg = self.config
        self.pool = LabelPool()
        self.reward_model = make_reward_model(
            RewardModelConfig(arch="cnn", inputs=("output",), width=cfg.reward_width), seed=cfg.seed
        ).to(self.device)
        self.reward_ready = False

    def _train_reward(self, r: int) -> dict[str, float]:
        cfg = self.config
        if not self.pool.trainable or cfg.reward_steps == 0:
            return {}
        rc = RewardTrainingConfig(
            steps=cfg.reward_steps, lr=cfg.reward_lr, seed=cfg.seed + r, device=str(self.device)
        )
        result = train_reward_model(self.reward_model, self.pool.samples(), rc)
        self.reward_model = result.model
        self.reward_ready = True
        return {"losses/reward": result.history[-1]["loss"] if result.history else float("nan")}

    @torch.no_grad()
    def reward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the reward model's probability of good for images in ``[0, 1]``."""
        return self.reward_model.predict_th(images, images).to(self.device)

    def save_extra(self) -> None:  # noqa: D102
        if self.reward_ready:
            save_reward_model(self.run_dir / "reward", self.reward_model, {"labels": len(self.pool.labels)})


@dataclass
class RWLDiffusionConfig(OnlineDiffusionConfig):
    """Reward-weighted likelihood for diffusion (Lee et al. 2023, arXiv 2302.12192)."""

    lr: float = 1e-4
    """AdamW learning rate. 3e-4 did not help RWL (seed 0: 15.6 % after 192 labels, 9.4 % after 256; 1e-4
    reached 14.1 % after 512)."""
    rwl_steps: int = 16
    """Gradient steps per round on the generated samples so far."""
    rwl_batch_size: int = 32
    """Generated samples per step (and as many pre-training images)."""
    beta: float = 0.2
    """Weight of the pre-training loss (denoising real digits of every class), Lee et al.'s ``beta``. With
    ``beta = 1``, 8 steps and ``reward`` weighting, 8 rounds moved the success rate only 7.8 -> 10.2 %
    (seed 0); these defaults reached 14-16 %."""
    weighting: str = "filter"
    """``reward``: the reward model's probability of good (Lee et al.); ``filter``: 1 above 0.5, else 0
    (the mass of bad samples at ``P(good) ~ 0.2`` otherwise dilutes the few good ones)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rwl_steps < 1 or self.rwl_batch_size < 1 or self.beta < 0:
            raise ConfigError("rwl_steps and rwl_batch_size must be >= 1 and beta >= 0")
        if self.weighting not in ("reward", "filter"):
            raise ConfigError(f"weighting must be 'reward' or 'filter', got {self.weighting!r}")


class RWLDiffusionTrainer(BinaryRewardMixin, OnlineDiffusionTrainer):
    """Reward-weighted denoising on the model's own samples plus ``beta`` x the pre-training loss.

    Lee et al. minimise ``E_x[r(x) L_denoise(x)] + beta E_pre[L_denoise]`` over generated samples ``x``
    scored by a reward model learned from human labels; ``L_denoise`` is the DDPM loss (Ho et al. eq. 14)
    and the pre-training data are the real digits the base model learned from. Online here: the reward
    model is retrained on all labels each round and re-scores every sample generated so far.
    """

    name = "rwl"
    feedback_kind = SINGLE
    config_class = RWLDiffusionConfig
    config: RWLDiffusionConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()
        self.generated: list[torch.Tensor] = []
        self.pretrain = load_embedded_mnist().images

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        self.pool.add(traj.images, feedback.labels)
        self.generated.append(traj.images)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        pool = torch.cat(self.generated)  # (M, 1, H, W) in [0, 1]
        r = self.reward(pool)
        weights = (r > 0.5).float() if cfg.weighting == "filter" else r
        abar = self.model.schedule.alphas_cumprod().float().to(self.device)
        total = self.model.schedule.num_train_timesteps
        losses, pre_losses = [], []

        def denoise_loss(x0: torch.Tensor) -> torch.Tensor:
            t = torch.randint(0, total, (x0.shape[0],), generator=self.rng).to(self.device)
            noise = torch.randn(x0.shape, generator=self.rng).to(self.device)
            a = abar[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            return ((self.model(x_t, t) - noise) ** 2).flatten(1).mean(1)  # (B,)

        for _ in range(cfg.rwl_steps):
            idx = torch.randint(0, pool.shape[0], (cfg.rwl_batch_size,), generator=self.rng)
            pre_idx = torch.randint(0, self.pretrain.shape[0], (cfg.rwl_batch_size,), generator=self.rng)

            def loss_fn(idx: torch.Tensor = idx, pre_idx: torch.Tensor = pre_idx) -> torch.Tensor:
                gen_loss = (
                    weights[idx.to(self.device)] * denoise_loss(to_model_space(pool[idx].to(self.device)))
                ).mean()
                loss = gen_loss
                if cfg.beta > 0:
                    pre = denoise_loss(to_model_space(self.pretrain[pre_idx].to(self.device))).mean()
                    loss = loss + cfg.beta * pre
                    pre_losses.append(float(pre.detach()))
                loss.backward()
                losses.append(float(gen_loss.detach()))
                return loss

            self.optimize(loss_fn)
        return metrics | {
            "losses/weighted": _mean(losses), "losses/pretrain": _mean(pre_losses),
            "reward/mean": float(r.mean()), "reward/batch_mean": float(self.reward(traj.images).mean()),
        }  # fmt: skip


@dataclass
class LearnedRewardPPOConfig(OnlineDiffusionConfig):
    """What the methods that run PPO against a reward learned from the labels share (``ddpo``, ``hero``)."""

    extra_samples: int = 0
    """Unlabelled samples per round, drawn like the labelled ones, scored by the learned reward alone and
    added to the PPO batch (:meth:`OnlineDiffusionTrainer.with_unlabelled`): more policy data per label,
    paid in sampling time."""

    min_reward_std: float = 0.0
    """Advantages are ``(r - mean) / max(std, min_reward_std)`` over the PPO batch. Once the policy has
    converged on what the reward likes, the rewards of a batch barely differ; a floor then keeps the
    update small instead of blowing the reward model's noise up to unit scale."""

    inner_rounds: int = 1
    """PPO updates per feedback round. The first is on the labelled batch plus ``extra_samples``; each
    further one on ``batch_size + extra_samples`` fresh chains from the updated model, scored by the learned
    reward alone (as RLHF runs many policy iterations per reward model). More learning per label, paid in
    sampling time and in trust in the reward."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.extra_samples < 0 or self.min_reward_std < 0:
            raise ConfigError(
                f"extra_samples and min_reward_std must be >= 0, got {self.extra_samples}, {self.min_reward_std}"
            )
        if self.inner_rounds < 1:
            raise ConfigError(f"inner_rounds must be >= 1, got {self.inner_rounds}")


@dataclass
class DDPOConfig(LearnedRewardPPOConfig):
    """DDPO-style PPO on a reward model learned from the same labels, with the DPOK KL penalty."""

    kl: float = 0.01
    """Weight of the per-step KL to the base model (DPOK)."""


class DDPOTrainer(BinaryRewardMixin, OnlineDiffusionTrainer):
    """PPO on the reverse chain (DDPO, Black et al. 2023) against a learned good/bad reward model.

    With DPOK's KL to the base model (Fan et al. 2023); the labelled batch plus ``extra_samples``
    unlabelled ones are the PPO batch.
    """

    name = "ddpo"
    feedback_kind = SINGLE
    config_class = DDPOConfig
    config: DDPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        self.pool.add(traj.images, feedback.labels)
        metrics = self._train_reward(self.round)
        if not self.reward_ready:
            return metrics | {"reward/mean": float("nan")}
        return metrics | self.learned_reward_ppo(traj, self.reward)


def concat_trajectories(a: Trajectories, b: Trajectories) -> Trajectories:
    """Two batches of chains (same steps) as one."""
    return Trajectories(
        torch.cat([a.noise, b.noise]), torch.cat([a.states, b.states], 1), torch.cat([a.actions, b.actions], 1),
        torch.cat([a.log_probs, b.log_probs], 1), a.timesteps, torch.cat([a.images, b.images]),
    )  # fmt: skip


@dataclass
class D3POConfig(OnlineDiffusionConfig):
    """D3PO-style preference fine-tuning: pairs of samples, no reward model."""

    lr: float = 1e-4
    """AdamW learning rate. 3e-4 was faster on seed 0 (27.3 % after 256 labels vs 15.6 %) but collapsed on
    the other seeds (seed 1: 14.8 -> 0.8 % once a round's pairs held no 7 and every answer was a tie; seed
    2: 14.1 -> 7.0 %); 1e-4 rose on all three. With LoRA rank 8 at lr 3e-3 (3 seeds, 512 labels, 2-core
    Xeon) 20 % took 299 +- 66 labels against 309 +- 144 here, and one seed ended at 11.7 %; with an unseeded
    adapter init the same setting took 160 +- 52: no robust gain, so full fine-tuning stays. LoRA at 5e-3
    collapsed (seed 0: 28.9 % after 128 labels, 0 % from 160 on)."""
    beta: float = 0.1
    """DPO temperature on the per-step log-ratios."""


class D3POTrainer(OnlineDiffusionTrainer):
    """DPO on each step of the reverse chain (D3PO, Yang et al. 2024, arXiv 2311.13231).

    Each round's batch is split into pairs (samples ``2i`` and ``2i + 1``), one comparison per pair. For a
    preferred chain ``w`` and a rejected chain ``l`` the loss at every step is
    ``-log sigmoid(beta [log pi(w_t) / pi_old(w_t) - log pi(l_t) / pi_old(l_t)])`` with the sampling model as
    reference and each log-ratio clipped to the PPO range (as D3PO's code does); ties are skipped.
    """

    name = "d3po"
    feedback_kind = PAIR
    config_class = D3POConfig
    config: D3POConfig

    def collect(self, traj: Trajectories) -> tuple[Any, dict[str, Any]]:  # noqa: D102
        half = len(traj) // 2
        if half == 0:
            raise ConfigError("d3po needs batch_size >= 2 (samples are compared in pairs)")
        left, right = traj.images[0 : 2 * half : 2], traj.images[1 : 2 * half : 2]
        result = self.ask(PAIR, left, right)
        words = result.labels
        good = torch.zeros(len(traj), dtype=torch.bool)
        for i, w in enumerate(words):
            if w == LEFT:
                good[2 * i] = True
            elif w == RIGHT:
                good[2 * i + 1] = True
        decided = sum(w in (LEFT, RIGHT) for w in words)
        return words, {"good": good, "best": None, "good_rate": decided / max(1, len(words))}

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        winners, losers = [], []
        for i, w in enumerate(feedback):
            if w == LEFT:
                winners.append(2 * i)
                losers.append(2 * i + 1)
            elif w == RIGHT:
                winners.append(2 * i + 1)
                losers.append(2 * i)
        if not winners:
            return {"losses/dpo": float("nan"), "charts/pairs": 0.0}
        win = torch.tensor(winners, device=self.device)
        lose = torch.tensor(losers, device=self.device)
        steps = self.trained_steps()
        n_steps = len(steps)
        lo, hi = math.log(1 - cfg.clip_range), math.log(1 + cfg.clip_range)
        losses: list[float] = []
        accs: list[float] = []
        for _ in range(cfg.policy_epochs):
            perm = torch.randperm(win.numel(), generator=self.rng).to(self.device)
            for sel in perm.split(max(1, cfg.minibatch_size // 2)):

                def loss_fn(sel: torch.Tensor = sel) -> torch.Tensor:
                    w, lo_idx = win[sel], lose[sel]
                    both = torch.cat([w, lo_idx])
                    total = torch.zeros((), device=self.device)
                    for j in steps:
                        t = int(traj.timesteps[j])
                        logp, _, _ = self.step_log_prob(
                            self.model, traj.states[j, both], t, traj.actions[j, both]
                        )
                        log_ratio = (logp - traj.log_probs[j, both]).clamp(lo, hi)
                        margin = log_ratio[: w.numel()] - log_ratio[w.numel() :]
                        loss = -F.logsigmoid(cfg.beta * margin).mean()
                        (loss / n_steps).backward()
                        total = total + loss.detach() / n_steps
                        accs.append(float((margin > 0).float().mean()))
                    losses.append(float(total))
                    return total

                self.optimize(loss_fn)
        return {
            "losses/dpo": _mean(losses),
            "charts/pairs": float(win.numel()),
            "charts/margin_positive": _mean(accs),
        }


BASELINES: dict[str, type[OnlineDiffusionTrainer]] = {
    RWLDiffusionTrainer.name: RWLDiffusionTrainer,
    DDPOTrainer.name: DDPOTrainer,
    D3POTrainer.name: D3POTrainer,
}
"""The baselines by method name (:data:`hfrl.agents.hero.METHODS` adds ``hero``)."""

__all__ = [
    "BASELINES",
    "D3POConfig",
    "D3POTrainer",
    "DDPOConfig",
    "DDPOTrainer",
    "LabelPool",
    "LearnedRewardPPOConfig",
    "OnlineDiffusionConfig",
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "RWLDiffusionConfig",
    "RWLDiffusionTrainer",
    "TargetDigitEvaluator",
    "TargetDigitLabeler",
    "TargetReport",
    "Trajectories",
    "concat_trajectories",
    "normalised",
]
