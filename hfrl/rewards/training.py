"""Training reward models from feedback: one loop, one loss per kind of feedback, and ensembles.

:class:`RewardTrainer` owns the loop — seeding, optimiser, schedule, augmentation, the optional
auxiliary loss, history — and each subclass writes only its loss on a mini-batch:

* :class:`BinaryRewardTrainer`: good/bad labels (:class:`~hfrl.rewards.records.LabelledSamples`);
* :class:`PreferenceRewardTrainer`: pairs (:class:`~hfrl.rewards.records.PreferencePairs`);
* :class:`TripletRewardTrainer`: HERO batches (:class:`~hfrl.rewards.records.TripletFeedback`).

:func:`train_reward_model` picks the trainer from the type of the feedback; :func:`train_ensemble` trains
K members on bootstrap samples or disjoint subsets of it (Yoon et al., arXiv 2307.02770).

Randomness: every draw comes from a ``torch.Generator`` seeded with ``config.seed``; weight
initialisation and dropout run under :func:`torch.random.fork_rng` seeded the same way, so the same seed
gives the same numbers on the CPU and the caller's global RNG state is left as it was.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from hfrl.device import resolve_device
from hfrl.errors import ConfigError, DataError
from hfrl.rewards.augment import perturb_inputs
from hfrl.rewards.config import RESAMPLING, RewardTrainingConfig
from hfrl.rewards.embedding import EmbeddingReward
from hfrl.rewards.ensemble import RewardEnsemble
from hfrl.rewards.models import CNNReward, RewardModel, RewardModelConfig, SimilarityReward, denoiser_spec
from hfrl.rewards.objectives import (
    binary_loss,
    bradley_terry_loss,
    class_weights,
    pairing_loss,
    triplet_cosine_loss,
)
from hfrl.rewards.records import (
    LabelledSamples,
    PreferencePairs,
    TripletFeedback,
    UnlabelledPairs,
    check_trainable,
)

D = TypeVar("D", LabelledSamples, PreferencePairs, TripletFeedback)


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
        model: The trained model, in eval mode, on the training device.
        history: One dict per logged step (``step``, ``loss``, and loss parts such as ``loss/aux``).
        seconds: Wall time.
    """

    model: RewardModel
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def build_single(config: RewardModelConfig) -> RewardModel:
    """An untrained single model of the config's architecture."""
    if config.arch == "embedding":
        return EmbeddingReward(config)
    if config.arch == "similarity":
        return SimilarityReward(config)
    return CNNReward(config)


def make_reward_model(
    config: RewardModelConfig | None = None, seed: int = 0, denoiser: nn.Module | None = None
) -> RewardModel:
    """Build a reward model with weights drawn from ``seed`` (the global RNG is left untouched).

    Args:
        config: Architecture (default: :class:`RewardModelConfig`'s defaults, an output-only CNN).
        seed: Initialisation seed.
        denoiser: The label-free estimator to put inside: a trained self-supervised denoiser (its
            architecture replaces ``config.denoiser``; its weights are copied) or a classical denoiser
            (its settings replace ``config.denoiser``).
    """
    config = config or RewardModelConfig()
    if denoiser is not None:
        config = replace(config, denoiser=denoiser_spec(denoiser))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_single(config)
    if denoiser is not None:
        model.denoiser.load_state_dict(denoiser.state_dict())  # type: ignore[union-attr]
    return model


class RewardTrainer(ABC, Generic[D]):
    """The training loop shared by every objective; subclasses implement :meth:`loss`.

    Args:
        model: The model to train (moved to ``config.device``).
        config: Training settings.
        unlabelled: Extra generated pairs for the auxiliary loss and for pre-training (optional).
        log_every: Record the losses every this many steps.
    """

    def __init__(
        self,
        model: RewardModel,
        config: RewardTrainingConfig | None = None,
        unlabelled: UnlabelledPairs | None = None,
        log_every: int = 25,
    ) -> None:
        self.config = config or RewardTrainingConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.unlabelled = unlabelled
        self.log_every = max(1, int(log_every))
        # models whose features augmentation would change (the similarity reward) train without it
        self.augment = self.config.augmentation() if getattr(model, "augmentable", True) else None
        self.denoised: torch.Tensor | None = None  # the rows' denoised inputs, set by train()
        self.pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None  # auxiliary pairs
        if self.config.aux_weight > 0 or self.config.pretrain_steps > 0:
            if isinstance(model, EmbeddingReward):
                raise ConfigError(
                    "the auxiliary pairing loss needs a model with a logit head; the HERO embedding reward has none"
                )
            if not model.uses_noisy:
                raise ConfigError(
                    "the auxiliary pairing loss asks which noisy input an output belongs to; this model does "
                    "not see the noisy input (use inputs that include 'noisy' or 'residual')"
                )

    # -- what subclasses provide

    @abstractmethod
    def check(self, data: D) -> None:
        """Raise :class:`~hfrl.errors.DataError` when ``data`` cannot train this objective."""

    @abstractmethod
    def loss(self, data: D, generator: torch.Generator) -> torch.Tensor:
        """The objective on one mini-batch drawn from ``data`` (on the device) with ``generator``."""

    @abstractmethod
    def pairs(self, data: D) -> tuple[torch.Tensor, torch.Tensor]:
        """``(noisy, output)`` pairs in ``data`` that the auxiliary task may use, ``(M, 1, H, W)`` each."""

    def finish(self, data: D) -> None:  # noqa: B027 - optional hook
        """Called once after the last step (HERO stores its references here)."""

    # -- the loop

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, n, (min(self.config.batch_size, n),), generator=generator).to(self.device)

    def _denoise(self, noisy: torch.Tensor) -> torch.Tensor | None:
        """The model's denoised estimate of ``noisy`` (``None`` without a denoiser), in chunks."""
        if getattr(self.model, "denoiser", None) is None:
            return None
        return torch.cat([self.model.denoise(chunk) for chunk in noisy.split(512)])  # type: ignore[misc]

    def _rows(
        self, idx: torch.Tensor, generator: torch.Generator, noisy: torch.Tensor, *outputs: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Rows ``idx`` of a noisy input, its outputs and its denoised estimate (or ``None``), augmented.

        Returns:
            ``(noisy, *outputs, denoised)``.
        """
        x = noisy[idx]
        outs = [o[idx] for o in outputs]
        d = self.denoised[idx] if self.denoised is not None else None
        if self.augment is None:
            return (x, *outs, d)
        moved = self.augment(generator, x, *outs, denoised=d)
        return moved if d is not None else (*moved, None)

    def _aux_loss(self, generator: torch.Generator) -> torch.Tensor:
        """Lee-style pairing loss on a batch of (noisy, output) pairs drawn from the pool."""
        px, po, pd = self.pool  # type: ignore[misc]
        idx = torch.randint(
            0, px.shape[0], (min(self.config.aux_batch_size, px.shape[0]),), generator=generator
        )
        idx = idx.to(self.device)
        x, o, d = px[idx], po[idx], (pd[idx] if pd is not None else None)
        if self.augment is not None:
            moved = self.augment(generator, x, o, denoised=d)
            x, o = moved[0], moved[1]
            d = moved[2] if d is not None else None
        wrong = [perturb_inputs(x, kind, generator, px, d, pd) for kind in self.config.aux_negatives]
        k, b = 1 + len(wrong), x.shape[0]
        stacked_x = torch.cat([x] + [w[0] for w in wrong])  # (K*B, 1, H, W)
        stacked_d = torch.cat([d] + [w[1] for w in wrong]) if d is not None else None  # type: ignore[misc]
        logits = self.model.logits(stacked_x, o.repeat(k, 1, 1, 1), stacked_d).view(k, b).T  # (B, K)
        return pairing_loss(logits)

    def _optimizer(self, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = torch.optim.AdamW(
            self.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
        return opt, sched

    def train(self, data: D) -> TrainResult:
        """Fit the model to ``data``; returns it in eval mode with the loss history.

        Raises:
            DataError: for feedback this objective cannot learn from (e.g. one class only).
        """
        self.check(data)
        cfg = self.config
        start = time.perf_counter()
        data = data.to(self.device)
        # The denoiser depends on the input only: its estimate is computed once per row, not per step.
        self.denoised = self._denoise(data.noisy)
        px, po = self.pairs(data)
        pd = self._denoise(px)
        if self.unlabelled is not None and len(self.unlabelled):
            u = self.unlabelled.to(self.device)
            ud = self._denoise(u.noisy)
            px, po = torch.cat([px, u.noisy]), torch.cat([po, u.output])
            pd = torch.cat([pd, ud]) if pd is not None and ud is not None else None
        self.pool = (px, po, pd)
        if pd is not None and isinstance(self.model, SimilarityReward):
            self.model.fit_stats(po, pd)  # label-free: every pair the trainer has, labelled or not
        generator = torch.Generator().manual_seed(cfg.seed)
        history: list[dict[str, float]] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)  # dropout
            self.model.train()
            if cfg.pretrain_steps:
                opt, sched = self._optimizer(cfg.pretrain_steps)
                for step in range(1, cfg.pretrain_steps + 1):
                    loss = self._aux_loss(generator)
                    self._step(opt, sched, loss)
                    if step % self.log_every == 0 or step == cfg.pretrain_steps:
                        history.append(
                            {"step": step - cfg.pretrain_steps, "loss/pretrain": float(loss.detach())}
                        )
            opt, sched = self._optimizer(cfg.steps)
            for step in range(1, cfg.steps + 1):
                parts = {"loss/main": self.loss(data, generator)}
                loss = parts["loss/main"]
                if cfg.aux_weight > 0:
                    parts["loss/aux"] = self._aux_loss(generator)
                    loss = loss + cfg.aux_weight * parts["loss/aux"]
                self._step(opt, sched, loss)
                if step % self.log_every == 0 or step == cfg.steps:  # .item() syncs a GPU: only when logging
                    row = {"step": float(step), "loss": float(loss.detach())}
                    history.append(row | {k: float(v.detach()) for k, v in parts.items()})
        self.model.eval()
        self.finish(data)
        return TrainResult(self.model, history, time.perf_counter() - start)

    def _step(self, opt: torch.optim.Optimizer, sched: Any, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise DataError(f"reward training diverged (loss {float(loss)}); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        opt.step()
        sched.step()


class BinaryRewardTrainer(RewardTrainer[LabelledSamples]):
    """Good/bad labels: class-weighted, label-smoothed binary cross-entropy on augmented pairs."""

    def check(self, data: LabelledSamples) -> None:  # noqa: D102
        check_trainable(data, "good/bad labels")

    def pairs(self, data: LabelledSamples) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return data.noisy, data.output

    def train(self, data: LabelledSamples) -> TrainResult:  # noqa: D102
        # Weights from the whole label set, not per batch: a batch of a few rare labels would swing them.
        self._weights = class_weights(data.label) if self.config.class_weighting else (1.0, 1.0)
        return super().train(data)

    def loss(self, data: LabelledSamples, generator: torch.Generator) -> torch.Tensor:  # noqa: D102
        idx = self._draw(len(data), generator)
        x, o, d = self._rows(idx, generator, data.noisy, data.output)
        return binary_loss(
            self.model.logits(x, o, d),  # type: ignore[arg-type]
            data.label[idx],
            weights=self._weights,
            label_smoothing=self.config.label_smoothing,
        )


class PreferenceRewardTrainer(RewardTrainer[PreferencePairs]):
    """Pairwise preferences: Bradley–Terry on the two outputs of one input, each pair seen both ways."""

    def check(self, data: PreferencePairs) -> None:  # noqa: D102
        if len(data) == 0:
            raise DataError("no preference pairs to train on")
        if bool((data.preference == 0.5).all()):
            raise DataError(f"all {len(data)} preference pairs are ties; nothing to learn from")

    def pairs(self, data: PreferencePairs) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return torch.cat([data.noisy, data.noisy]), torch.cat([data.left, data.right])

    def loss(self, data: PreferencePairs, generator: torch.Generator) -> torch.Tensor:  # noqa: D102
        idx = self._draw(len(data), generator)
        x, a, b, d = self._rows(idx, generator, data.noisy, data.left, data.right)
        n = x.shape[0]  # type: ignore[union-attr]
        dd = torch.cat([d, d]) if d is not None else None
        logits = self.model.logits(torch.cat([x, x]), torch.cat([a, b]), dd)  # type: ignore[list-item]  # one pass, both sides
        return bradley_terry_loss(
            logits[:n], logits[n:], data.preference[idx], label_smoothing=self.config.label_smoothing
        )


class TripletRewardTrainer(RewardTrainer[TripletFeedback]):
    """HERO: triplet loss (anchor = best, positive = good, negative = bad) on cosine distance.

    Without any best mark, anchors are drawn from the good samples. After training, the references are
    the embeddings of the best samples (``config.reference="best"``) or of all good ones.
    """

    def check(self, data: TripletFeedback) -> None:  # noqa: D102
        check_trainable(data, "HERO labels")
        if not isinstance(self.model, EmbeddingReward):
            raise ConfigError("the triplet objective trains an EmbeddingReward (arch='embedding')")

    def pairs(self, data: TripletFeedback) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return data.noisy, data.output

    def _groups(self, data: TripletFeedback) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        good = torch.nonzero(data.label > 0.5).flatten()
        bad = torch.nonzero(data.label < 0.5).flatten()
        best = torch.nonzero(data.best & (data.label > 0.5)).flatten()
        return (best if best.numel() else good), good, bad

    def loss(self, data: TripletFeedback, generator: torch.Generator) -> torch.Tensor:  # noqa: D102
        anchors, good, bad = self._groups(data)
        n = self.config.batch_size

        def pick(pool: torch.Tensor) -> torch.Tensor:
            return pool[torch.randint(0, pool.numel(), (n,), generator=generator).to(pool.device)]

        idx = torch.cat([pick(anchors), pick(good), pick(bad)])
        x, o, d = self._rows(idx, generator, data.noisy, data.output)
        e = self.model.embed(x, o, d)  # type: ignore[operator]  # (3n, D)
        return triplet_cosine_loss(e[:n], e[n : 2 * n], e[2 * n :], margin=self.config.triplet_margin)

    def finish(self, data: TripletFeedback) -> None:  # noqa: D102
        anchors, good, _ = self._groups(data)
        ref = anchors if self.config.reference == "best" else good
        self.model.set_references(data.noisy[ref], data.output[ref])  # type: ignore[operator]


TRAINERS: dict[type, type[RewardTrainer]] = {
    LabelledSamples: BinaryRewardTrainer,
    PreferencePairs: PreferenceRewardTrainer,
    TripletFeedback: TripletRewardTrainer,
}


def train_reward_model(
    model: RewardModel,
    data: LabelledSamples | PreferencePairs | TripletFeedback,
    config: RewardTrainingConfig | None = None,
    unlabelled: UnlabelledPairs | None = None,
) -> TrainResult:
    """Train ``model`` with the objective that fits the kind of feedback in ``data``.

    Args:
        model: A :class:`CNNReward` (binary, pairwise) or :class:`EmbeddingReward` (triplet).
        data: The feedback.
        config: Training settings.
        unlabelled: Extra generated pairs for the auxiliary loss.

    Raises:
        DataError: for feedback the objective cannot learn from.
        ConfigError: for a model that does not fit the objective.
    """
    trainer = TRAINERS.get(type(data))
    if trainer is None:
        raise ConfigError(f"no reward objective for {type(data).__name__}")
    return trainer(model, config, unlabelled).train(data)


def resample(n: int, k: int, how: str, generator: torch.Generator) -> list[torch.Tensor]:
    """Row indices of ``k`` training sets drawn from ``n`` rows.

    Args:
        n: Rows available.
        k: Members.
        how: ``bootstrap`` (``n`` draws with replacement each) or ``disjoint`` (a random partition into
            ``k`` near-equal parts, as Yoon et al. train their ensemble).
        generator: CPU generator.

    Raises:
        ConfigError: for an unknown scheme.
        DataError: when ``disjoint`` would leave a member with no rows.
    """
    if how == "bootstrap":
        return [torch.randint(0, n, (n,), generator=generator) for _ in range(k)]
    if how == "disjoint":
        if n < k:
            raise DataError(f"cannot split {n} labels into {k} disjoint parts")
        return list(torch.randperm(n, generator=generator).tensor_split(k))
    raise ConfigError(f"unknown resampling {how!r}; expected one of {', '.join(RESAMPLING)}")


def _stratified_ok(data: D, idx: torch.Tensor) -> bool:
    if isinstance(data, (LabelledSamples, TripletFeedback)):
        labels = data.label[idx]
        return bool((labels > 0.5).any() and (labels < 0.5).any())
    return True


def train_ensemble(
    data: LabelledSamples | PreferencePairs | TripletFeedback,
    k: int = 5,
    *,
    model_config: RewardModelConfig | None = None,
    config: RewardTrainingConfig | None = None,
    resampling: str = "bootstrap",
    combine: str = "mean",
    unlabelled: UnlabelledPairs | None = None,
    make_member: Callable[[int], RewardModel] | None = None,
) -> tuple[RewardEnsemble, list[TrainResult]]:
    """Train ``k`` members, each on its own resample of ``data`` and with its own seed.

    Args:
        data: The feedback.
        k: Members.
        model_config: Architecture of each member (ignored with ``make_member``).
        config: Training settings; member ``i`` uses seed ``config.seed + i``.
        resampling: ``bootstrap`` or ``disjoint``.
        combine: ``mean`` or ``product`` (see :class:`RewardEnsemble`).
        unlabelled: Extra generated pairs for the auxiliary loss.
        make_member: ``seed -> untrained model``, to build members some other way.

    Returns:
        ``(ensemble, per-member results)``.
    """
    if k < 1:
        raise ConfigError(f"an ensemble needs k >= 1 members, got {k}")
    config = config or RewardTrainingConfig()
    generator = torch.Generator().manual_seed(config.seed + 7919)
    members: list[RewardModel] = []
    results: list[TrainResult] = []
    parts = resample(len(data), k, resampling, generator) if k > 1 else [torch.arange(len(data))]
    for i, idx in enumerate(parts):
        if not _stratified_ok(data, idx):
            idx = torch.arange(len(data))  # a resample with one class only: fall back to all labels
        seed = config.seed + i
        model = make_member(seed) if make_member else make_reward_model(model_config, seed)
        result = train_reward_model(model, data.subset(idx), replace(config, seed=seed), unlabelled)
        members.append(result.model)
        results.append(result)
    return RewardEnsemble(members, combine).eval(), results
