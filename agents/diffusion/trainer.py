"""The online diffusion trainer base: rounds of sample -> feedback -> update, and what every method shares.

:class:`OnlineDiffusionTrainer` owns the loop: sampling the reverse chains on ``hfrl/DiffusionDenoise-v0``
with their log-probabilities (:class:`Trajectories`), the feedback round trip through the
:class:`~hfrl.feedback.FeedbackQueue`, evaluation, logging, grids and checkpoints. Each method writes what
it asks (:meth:`~OnlineDiffusionTrainer.collect`), how it updates (:meth:`~OnlineDiffusionTrainer.update`)
and what it keeps between rounds (:meth:`~OnlineDiffusionTrainer.extra_state`). The loop pieces it shares
with the one-step :class:`~hfrl.agents.base.Trainer` (optimiser step, TensorBoard, the checkpoint file)
come from :class:`~hfrl.agents.loop.TrainerLoop`.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.agents.callbacks import Callback, CallbackList
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.loop import STATE_FILE, TensorBoard, TrainerLoop
from hfrl.checkpoint import load_into, save_checkpoint
from hfrl.device import resolve_device
from hfrl.diffusion import Scheduler, UNet2D, initial_noise, load_model, model_scheduler, to_images
from hfrl.diffusion_task import TargetDigitEvaluator, TargetDigitLabeler
from hfrl.envs.diffusion import BatchedDiffusionDenoiseEnv
from hfrl.errors import CheckpointError, ConfigError, HfrlError
from hfrl.feedback import BAD, GOOD, HERO, PAIR, SINGLE, FeedbackQueue, simulate
from hfrl.lora import LORA_KIND, add_lora, lora_disabled, merge_lora
from hfrl.runs import make_run_dir, write_json, write_rows

ONLINE_STATE_FORMAT = "hfrl-online-state"
ONLINE_STATE_FORMAT_VERSION = 1
RESUMABLE_CHANGES = ("rounds", "device", "label_timeout")
"""Config fields a resumed run may change; any other difference is refused."""
OVER_OPTIMISATION = ("learned_reward", "success_rate", "kl_to_base", "source_error", "diversity")
"""The per-round columns read side by side against labels used: the learned reward climbing while the
independent evaluator's success stalls, the KL to the base model growing, the base model's error on the
samples rising or their diversity falling is over-optimisation (``over_optimisation.png``)."""


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


class OnlineDiffusionTrainer(TrainerLoop):
    """Rounds of sample -> feedback -> update for a DDPM or a rectified flow; subclasses write feedback and update.

    The model's kind picks the policy: DDIM with ``eta`` for a DDPM, Flow-GRPO's SDE (``noise_level``) for
    a flow (:mod:`hfrl.flow`); both are Gaussian steps with log-probabilities, so every method runs on both.

    A run directory holds ``config.json``, ``rounds.csv`` and TensorBoard scalars in ``tb/`` (per round:
    labels used, the method's learned reward, the evaluator's success and digit rates, diversity and
    source error on fixed fresh noise, the KL of the sampling chain to the base model's, the labeler's good
    rate in the round's batch, update metrics), ``over_optimisation.png`` (:data:`OVER_OPTIMISATION`
    against labels used), ``state.safetensors`` (the resumable checkpoint, written after every round),
    ``grids/round_RRR.png`` (the round's batch: good framed green, best blue), ``model.*``
    (the fine-tuned model, loads with :func:`hfrl.diffusion.load_model`), ``adapters.*`` (with
    ``adapter="lora"``: the LoRA adapters alone, for :func:`hfrl.lora.attach_lora`), ``reward.*`` (the reward model, if
    any), ``feedback.sqlite`` and ``evaluation.json``.

    A run resumes from its directory (:meth:`load_state`, then :meth:`train`) exactly where its last
    finished round left it: model (with its adapters), optimiser, RNG states, the method's labels and
    reward model, the round counter and the feedback database's position, so the labels of a round that
    was killed after they were given are reused, not asked again.

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
        callbacks: Called after each round (:meth:`~hfrl.agents.callbacks.Callback.on_round` with its row;
            ``False`` stops after that round).
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
        callbacks: Iterable[Callback] = (),
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
        self.base = base
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
        self.feedback_position: int | None = None
        """Queries of the feedback database before this run's next one (``None``: ask anew, appending)."""
        self.history: list[dict[str, float]] = []
        self.initial: dict[str, float] | None = None
        self.callbacks = CallbackList(callbacks)
        self.tb = TensorBoard(self.run_dir)
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

    def learned_reward(self, images: torch.Tensor) -> torch.Tensor | None:
        """``(B,)`` the method's learned reward of images in ``[0, 1]``; ``None`` without one (yet)."""
        return None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """What the method keeps between rounds (labels, reward model): ``(tensors, json_values)``."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`extra_state` returned (default: nothing to restore)."""

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
        norm = self.clipped_step(self.config.max_grad_norm)
        if not math.isfinite(norm):
            raise HfrlError(f"{self.name}: non-finite gradient in round {self.round}; lower lr or clip_range")
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
            queries = queue.store.queries()
            pos = len(queries) if self.feedback_position is None else self.feedback_position
            if pos < len(queries) and queries[pos].kind == kind and queries[pos].size == images.shape[0]:
                # a resumed run: this round was asked before the kill; its labels are reused
                result = self._answers(queue, queries[pos].id)
                self.feedback_position = pos + 1
                self.labels_used += sum(word is not None for word in result.labels)
                return result
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
            result = self._answers(queue, qid)
            self.feedback_position = len(queue.store.queries())
        self.labels_used += sum(word is not None for word in result.labels)
        return result

    def _answers(self, queue: FeedbackQueue, qid: int) -> Any:
        """Query ``qid``'s answers: the synthetic labeler answers what is pending, people are waited for."""
        if self.labeler is not None:
            kind = queue.store.query(qid).kind
            simulate(queue.store, self.labeler, kind=kind, batch_size=max(16, queue.store.query(qid).size))
        return queue.wait(qid, timeout=self.config.label_timeout)

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
                learned = self.learned_reward(images)
                out["learned_reward"] = float(learned.float().mean()) if learned is not None else float("nan")
                out["kl_to_base"] = self.kl_to_base(noise[: self.config.batch_size])
        return out

    @torch.no_grad()
    def kl_to_base(self, noise: torch.Tensor) -> float:
        """Mean KL of the sampling chain from ``noise`` ``(B, C, H, W)`` to the base model's chain.

        The chains are Markov with Gaussian steps of the same variance, so the path KL is the sum over steps
        of the closed-form per-step KLs along the policy's own samples (fixed sampling seed). It is summed
        over the steps the updates train on (:meth:`trained_steps`, as the methods' KL penalties are): the
        last steps' near-zero variance would turn any change of the model into thousands of nats.
        """
        traj = self.rollout(noise, torch.Generator().manual_seed(self.config.seed + 20_021))
        total = torch.zeros(noise.shape[0], device=self.device)
        for j in self.trained_steps():
            x, t = traj.states[j], int(traj.timesteps[j])
            out = self.scheduler.step(self.model(x, t), t, x, prev_sample=x)
            ref = self.scheduler.step(self.base(x, t), t, x, prev_sample=x).mean
            total += ((out.mean - ref) ** 2).flatten(1).sum(1) / (2.0 * out.std.clamp(min=1e-8) ** 2)
        return float(total.mean())

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
        """Run the rounds left (all of them, or those after a :meth:`load_state`); returns history and evaluation.

        Raises:
            FeedbackTimeoutError: when people do not answer within ``label_timeout``.
        """
        cfg = self.config
        start = time.perf_counter()
        write_json(self.run_dir / "config.json", {"method": self.name, **cfg.to_dict()})
        (self.run_dir / "grids").mkdir(exist_ok=True)
        self.callbacks.init(self)  # type: ignore[arg-type]
        self.callbacks.on_train_start()
        if self.initial is None:  # a fresh run: round 0 is the model before any update
            self.initial = self.evaluate() if cfg.eval_samples else {}
            self.history = []
            self._log({"round": 0.0, "labels_used": 0.0, **self.initial})
            self.save_state()
        else:  # resumed: the rows a killed run logged after its checkpoint go
            self._log(None)
        initial = self.initial
        keep_going = True
        for r in range(self.round + 1, cfg.rounds + 1):
            if not keep_going or (self.stop is not None and self.stop.is_set()):
                break
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
            self._log(row)
            self.save_model()
            self.save_state()  # after the round's row and model: a kill from here on loses nothing
            keep_going = self.callbacks.on_round(row)

        final_scores = self.evaluate() if cfg.eval_samples else {}
        final = {
            "method": self.name, "target_class": cfg.target_class, "rounds": self.round,
            "labels_used": self.labels_used, "before": initial, "after": final_scores,
            "class_counts_after": list(getattr(self, "_last_eval_counts", ())),
            "seconds": time.perf_counter() - start, "device": str(self.device),
        }  # fmt: skip
        self.save_model()
        self.save_extra()
        save_over_optimisation_plot(self.history, self.run_dir / "over_optimisation.png")
        if cfg.eval_samples:
            save_feedback_grid(self._last_eval_images[:64], self.run_dir / "samples_after.png")
        self.callbacks.on_train_end()
        self.tb.close()
        write_json(self.run_dir / "evaluation.json", final)  # last: the run's "done" marker
        return OnlineResult(list(self.history), final, self.run_dir, time.perf_counter() - start)

    def _log(self, row: dict[str, float] | None) -> None:
        """Append a round's row to ``rounds.csv`` and TensorBoard (``None``: rewrite the rows kept)."""
        if row is not None:
            self.history.append(row)
        write_rows(self.run_dir / "rounds.csv", self.history)
        if row is not None:
            self.tb.log(int(row["round"]), row)
            if self.progress is not None:
                self.progress(row)

    # -- checkpoints and resume ------------------------------------------------------------------------

    def save_state(self) -> Path:
        """Write the resumable checkpoint ``RUN_DIR/state.safetensors`` (and ``state.json`` to read).

        Tensors: the model (with its adapters), the optimiser's moments, the trainer's generator and the
        method's :meth:`extra_state`; the document: round, labels used, the feedback database's position,
        the labeler's RNG, the rows logged so far, the config and the method's values.
        """
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        optim_tensors, opt_doc = self.optimizer_state()
        tensors.update(optim_tensors)
        tensors["rng.trainer"] = self.rng.get_state()
        extra_t, extra_v = self.extra_state()
        tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_t.items()})
        labeler_rng = getattr(self.labeler, "rng", None)
        doc = {
            "format": ONLINE_STATE_FORMAT,
            "format_version": ONLINE_STATE_FORMAT_VERSION,
            "method": self.name,
            "round": self.round,
            "labels_used": self.labels_used,
            "feedback_position": self.feedback_position,
            "optimizer": opt_doc,
            "labeler_rng": labeler_rng.bit_generator.state if labeler_rng is not None else None,
            "initial": self.initial,
            "history": self.history,
            "config": self.config.to_dict(),
            "extra": extra_v,
        }
        return self.write_state(tensors, doc, self.round)

    def load_state(self, run_dir: str | Path | None = None) -> None:
        """Restore a run from the checkpoint :meth:`save_state` wrote; :meth:`train` then runs the rounds left.

        Raises:
            CheckpointError: one line, for a missing or damaged checkpoint, another method's, or a run
                with another config (only :data:`RESUMABLE_CHANGES` may differ).
        """
        run_dir = Path(run_dir or self.run_dir)
        weights = run_dir / f"{STATE_FILE}.safetensors"
        doc, tensors, where = self.read_state(run_dir)
        if not isinstance(doc, dict) or doc.get("format") != ONLINE_STATE_FORMAT:
            raise CheckpointError(f"{where}: not an hfrl online diffusion checkpoint")
        if doc.get("method") != self.name:
            raise CheckpointError(f"{where}: checkpoint of method {doc.get('method')!r}, not {self.name!r}")
        for key, kind in (("round", int), ("labels_used", int), ("optimizer", dict), ("history", list)):
            if not isinstance(doc.get(key), kind):
                raise CheckpointError(f"{where}: the state document has no {kind.__name__} {key!r}")
        self._check_same_config(doc.get("config"), run_dir)
        self.check_optimizer_tensors(tensors, where)
        self.refresh_state_copy(run_dir)
        try:
            load_into(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, weights)
            self.load_optimizer_state(tensors, doc["optimizer"], self.device)
            self.rng.set_state(tensors["rng.trainer"])
            labeler_rng = getattr(self.labeler, "rng", None)
            if labeler_rng is not None and doc.get("labeler_rng") is not None:
                labeler_rng.bit_generator.state = doc["labeler_rng"]
            self.load_extra_state(
                {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}, doc.get("extra", {})
            )
        except CheckpointError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{weights}: the checkpoint does not fit this trainer ({msg})") from None
        self.round = int(doc["round"])
        self.labels_used = int(doc["labels_used"])
        self.feedback_position = doc.get("feedback_position")
        self.initial = doc.get("initial") or {}
        self.history = [dict(row) for row in doc["history"]]

    def _check_same_config(self, saved: Any, run_dir: Path) -> None:
        """Refuse to resume a run under another config (one line naming the fields that differ)."""
        if not isinstance(saved, dict):
            raise CheckpointError(f"{run_dir}: the checkpoint records no config")
        now = json.loads(json.dumps(self.config.to_dict()))
        diff = [
            f"{k}={saved.get(k)!r} (now {now.get(k)!r})"
            for k in sorted(set(saved) | set(now))
            if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
        ]
        if diff:
            raise CheckpointError(
                f"{run_dir} was run with {', '.join(diff)}; resume it with the same config "
                f"(only {', '.join(RESUMABLE_CHANGES)} may change)"
            )

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


def save_over_optimisation_plot(history: list[dict[str, float]], path: Path) -> Path | None:
    """Plot each of :data:`OVER_OPTIMISATION` against labels used, one panel each, as a PNG.

    Rounds without a value (not evaluated, no learned reward yet) are left out of that curve.

    Returns:
        ``path``, or ``None`` when there is no row yet.
    """
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {
        "learned_reward": "learned reward", "success_rate": "evaluator success rate",
        "kl_to_base": "KL to base model", "source_error": "source error (1 = real digits)",
        "diversity": "diversity (1 = real digits)",
    }  # fmt: skip
    fig, axes = plt.subplots(1, len(OVER_OPTIMISATION), figsize=(3.2 * len(OVER_OPTIMISATION), 2.8))
    for ax, key in zip(axes, OVER_OPTIMISATION):
        points = [
            (row["labels_used"], row[key])
            for row in history
            if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
        ]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3)
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("labels used", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.18, top=0.88, wspace=0.35)
    fig.savefig(path, dpi=90)
    plt.close(fig)
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
    "OVER_OPTIMISATION",
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "Trajectories",
    "concat_trajectories",
    "mean_or_nan",
    "save_feedback_grid",
    "save_over_optimisation_plot",
]
