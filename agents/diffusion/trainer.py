"""The online diffusion trainer base: rounds of sample -> feedback -> update, and what every method shares.

:class:`OnlineDiffusionTrainer` owns the loop: sampling the reverse chains on ``hfrl/DiffusionDenoise-v0``
with their log-probabilities (:class:`Trajectories`), the feedback round trip through the
:class:`~hfrl.feedback.FeedbackQueue`, evaluation, logging, grids and checkpoints. Each method writes what
it asks (:meth:`~OnlineDiffusionTrainer.collect`) and how it updates (:meth:`~OnlineDiffusionTrainer.update`).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.checkpoint import save_checkpoint
from hfrl.device import resolve_device
from hfrl.diffusion import Scheduler, UNet2D, initial_noise, load_model, model_scheduler, to_images
from hfrl.diffusion_task import TargetDigitEvaluator, TargetDigitLabeler
from hfrl.envs.diffusion import BatchedDiffusionDenoiseEnv
from hfrl.errors import ConfigError, HfrlError
from hfrl.feedback import BAD, GOOD, HERO, PAIR, SINGLE, FeedbackQueue, simulate
from hfrl.lora import LORA_KIND, add_lora, lora_disabled, merge_lora
from hfrl.runs import make_run_dir, write_json, write_rows


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


class OnlineDiffusionTrainer:
    """Rounds of sample -> feedback -> update for a DDPM or a rectified flow; subclasses write feedback and update.

    The model's kind picks the policy: DDIM with ``eta`` for a DDPM, Flow-GRPO's SDE (``noise_level``) for
    a flow (:mod:`hfrl.flow`); both are Gaussian steps with log-probabilities, so every method runs on both.

    A run directory holds ``config.json``, ``rounds.csv`` (per round: labels used, the evaluator's
    success and digit rates on fixed fresh noise, the labeler's good rate in the round's batch, update
    metrics), ``grids/round_RRR.png`` (the round's batch: good framed green, best blue), ``model.*``
    (the fine-tuned model, loads with :func:`hfrl.diffusion.load_model`), ``adapters.*`` (with
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
        model: Start from this DDPM or flow model instead of ``config.model`` (trained in place; with
            ``adapter="lora"`` its layers are wrapped in adapters in place).
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
        self.model = (
            model.to(self.device)
            if model is not None
            else load_model(cfg.model_checkpoint(), device=self.device)
        )
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
        # The policy: DDIM with eta for a DDPM, Flow-GRPO's SDE for a rectified flow.
        self.scheduler: Scheduler = model_scheduler(
            self.model, cfg.num_inference_steps, stochastic=True, eta=cfg.eta, noise_level=cfg.noise_level
        )
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

    @torch.no_grad()
    def reference_output(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The base model's output at ``(x, t)``: the frozen copy, or the model with its adapters off.

        Only for ``kl > 0`` (or LoRA adapters): otherwise no base model is kept.
        """
        if self.reference is not None:
            return self.reference(x, t)
        if self.adapters is None:
            raise HfrlError(f"{self.name}: no reference model is kept when kl == 0 and adapter == 'full'")
        with lora_disabled(self.model):
            return self.model(x, t)

    def kl_to_reference(self, x: torch.Tensor, t: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """``(B,)`` closed-form KL between this step's Gaussian and the base model's (same variance)."""
        with torch.no_grad():
            ref = self.scheduler.step(self.reference_output(x, t), t, x, prev_sample=x).mean
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
        """Write the fine-tuned model as ``RUN_DIR/model`` (loads with :func:`hfrl.diffusion.load_model`)."""
        meta = {
            "method": self.name,
            "round": self.round,
            "labels_used": self.labels_used,
            "base": self.config.model_checkpoint(),
        }
        model = self.model
        if self.adapters is not None:
            save_checkpoint(
                self.run_dir / "adapters", self.adapters, kind=LORA_KIND, config=self.adapters.config_dict(),
                metadata=meta,
            )  # fmt: skip
            model = merge_lora(self.model)
        return save_checkpoint(
            self.run_dir / "model",
            model,
            kind=self.model.kind,
            config=self.model.config_dict(),
            metadata=meta,
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
            save_feedback_grid(
                traj.images,
                self.run_dir / "grids" / f"round_{r:03d}.png",
                batch.get("good"),
                batch.get("best"),
            )
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
            save_feedback_grid(self._last_eval_images[:64], self.run_dir / "samples_after.png")
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


def save_feedback_grid(
    images: torch.Tensor, path: Path, good: torch.Tensor | None = None, best: int | None = None
) -> Path:
    """Save samples ``(B, 1, H, W)`` in ``[0, 1]`` as a PNG grid (16 a row, 2x upscaled), framed by feedback.

    Args:
        images: The samples.
        path: The PNG.
        good: ``(B,)`` bool, framed green.
        best: Position of the best sample, framed blue (over its green frame).
    """
    from torchvision.utils import make_grid, save_image

    rgb = F.pad(images.repeat(1, 3, 1, 1), (1, 1, 1, 1), value=0.0)  # (B, 3, H + 2, W + 2)
    marks = [(good, (0.0, 1.0, 0.0))]
    if best is not None:
        is_best = torch.zeros(images.shape[0], dtype=torch.bool)
        is_best[int(best)] = True
        marks.append((is_best, (0.2, 0.4, 1.0)))
    for mask, colour in marks:
        if mask is None or not bool(mask.any()):
            continue
        for c, v in enumerate(colour):
            rgb[mask, c, 0, :] = rgb[mask, c, -1, :] = v
            rgb[mask, c, :, 0] = rgb[mask, c, :, -1] = v
    grid = make_grid(rgb, nrow=min(16, images.shape[0]), padding=1, pad_value=0.3)
    save_image(grid.repeat_interleave(2, 1).repeat_interleave(2, 2), str(path))
    return path


def concat_trajectories(a: Trajectories, b: Trajectories) -> Trajectories:
    """Two batches of chains (same steps) as one."""
    return Trajectories(
        torch.cat([a.noise, b.noise]), torch.cat([a.states, b.states], 1), torch.cat([a.actions, b.actions], 1),
        torch.cat([a.log_probs, b.log_probs], 1), a.timesteps, torch.cat([a.images, b.images]),
    )  # fmt: skip


def mean_or_nan(values: list[float]) -> float:
    """The mean of logged values (``nan`` for none)."""
    return float(sum(values) / len(values)) if values else float("nan")


__all__ = [
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "Trajectories",
    "concat_trajectories",
    "mean_or_nan",
    "save_feedback_grid",
]
