"""The trainer base class: it owns the loop; each agent writes its loss and little else.

Every agent maximises the same regularised objective on the one-step denoising environment::

    J(theta) = E_x E_{a ~ pi_theta(.|x)} [ r(x, a) ]
               - kl          * E_x KL(pi_theta(.|x) || pi_ref(.|x))       # frozen pretrained policy
               - aux         * E_(x_s, y_s) || g_theta(x_s) - y_s ||^2     # source-domain denoising
               - consistency * E_x || g_theta(x) - g_0(x) ||^2             # frozen initial generator

with ``x`` noisy *target* images (the agent never sees their clean versions) and ``(x_s, y_s)`` noisy /
clean *source* pairs (that skill is what the auxiliary loss keeps). :meth:`Trainer.regularizers` computes
the three penalties — each is logged even at weight 0, and a weight of 0 removes its gradient — and an
agent's :meth:`Trainer.update` adds its own reward term.

The trainer also owns seeding, the device, logging (CSV + TensorBoard, metrics named ``group/name``),
the progress bar, resumable checkpoints (safetensors + JSON: policy, optimiser and every RNG state), the
periodic and final evaluation by the independent evaluator, and callbacks.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from hfrl.agents.callbacks import Callback, CallbackList, CheckpointCallback, EvalCallback
from hfrl.agents.config import TrainerConfig
from hfrl.agents.loop import STATE_FILE, MetricLogger, TrainerLoop, read_text
from hfrl.checkpoint import load_into, save_checkpoint
from hfrl.data import (
    check_image_shape,
    data_record,
    dataset_name,
    describe_record,
    is_data_record,
    resolve_domains,
    same_data,
)
from hfrl.device import resolve_device
from hfrl.envs.rewards import RewardSpec, call_reward
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.envs.wrappers import SourceAuxTerm
from hfrl.errors import CheckpointError, ConfigError, HfrlError
from hfrl.evaluation import DomainEvaluation, Evaluation, compare, evaluate_generator, evaluate_on
from hfrl.judges import (
    Evaluator,
    NotMeasuredWarning,
    check_judge_shape,
    digit_judge_applies,
    missing_judge_note,
    require_judge,
)
from hfrl.noise import make_noise
from hfrl.policy import GaussianPolicy
from hfrl.runs import make_run_dir, write_json

STATE_FORMAT = "hfrl-trainer-state"
STATE_FORMAT_VERSION = 2
"""2: the state document lives in the checkpoint's safetensors metadata (1: in ``state.json`` only)."""
_INITIAL_EVALUATIONS: dict[tuple, Evaluation] = {}
"""Test-split evaluations of initial generators, shared by the trainers of one process (sweeps and
benchmarks start many runs from the same generator)."""


class NonFiniteLossError(HfrlError):
    """A loss became NaN or inf; training stopped and the last good checkpoint (if any) was kept."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        steps: Updates done in total (including those before a resume).
        history: Metrics of every update of this call.
        final: The final evaluation (``compare`` of the initial and the fine-tuned generator on the test
            split, plus ``labels_used`` and ``seconds``).
        run_dir: Where everything was written.
        evaluation: The fine-tuned generator's full test-split evaluation behind ``final`` (per-image
            outputs and metrics, for reports and grids).
    """

    steps: int
    history: list[dict[str, float]]
    final: dict[str, Any]
    run_dir: Path
    evaluation: Evaluation | None = None


class Trainer(TrainerLoop, ABC):
    """Base class of every fine-tuning agent.

    Subclasses set ``name`` and ``config_class`` and implement :meth:`update`; agents with state beyond
    the policy and optimiser (an adaptive KL coefficient, a replay of labelled samples) also override
    :meth:`extra_state` / :meth:`load_extra_state`.

    Args:
        config: The agent's configuration.
        reward: The reward: a reward model (``nn.Module``), any callable ``(noisy, output) -> (B,)``,
            ``"labeler"`` (oracle) or a checkpoint path; default ``config.reward``.
        policy: The policy to fine-tune; default: a :class:`~hfrl.policy.GaussianPolicy` around
            ``config.generator`` (the shipped source-domain denoiser when ``None``).
        run_dir: Run directory (default ``runs/finetune-<agent>-TIMESTAMP``).
        callbacks: Extra callbacks (checkpoint and evaluation callbacks come from the config).
        evaluator: The independent judge used for logging and the final evaluation (default: shipped).
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[TrainerConfig]] = TrainerConfig
    needs_reward: ClassVar[bool] = True

    def __init__(
        self,
        config: TrainerConfig,
        *,
        reward: RewardSpec = None,
        policy: GaussianPolicy | None = None,
        run_dir: str | Path | None = None,
        callbacks: Iterable[Callback] = (),
        evaluator: Evaluator | None = None,
    ) -> None:
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.device = resolve_device(config.device)
        self.run_dir = make_run_dir(run_dir, f"finetune-{self.name}")
        self.rng = torch.Generator().manual_seed(config.seed)
        self._checkpoint_step: int | None = None  # step of the last checkpoint written or loaded

        if policy is None:
            policy = GaussianPolicy.from_checkpoint(
                config.generator,
                device=self.device,
                space=config.policy_space,  # type: ignore[arg-type]
                log_std=config.log_std,
                learn_std=config.learn_std,
            )
        self.policy = policy.to(self.device)
        self.reference = self.policy.frozen_copy()  # pi_ref for the KL term, g_0 for consistency

        reward = reward if reward is not None else config.reward
        if reward is None and self.needs_reward:
            raise ConfigError(f"agent {self.name!r} needs a reward: a reward-model checkpoint or 'labeler'")
        # One path for every kind of data: a named dataset, the user's images, or two sets of them.
        self.domains = resolve_domains(
            config.dataset,
            config.data_dir,
            config.source_classes,
            config.target_classes,
            source_data=config.source_data,
            target_data=config.target_data,
            max_value=config.max_value,
        )
        target = self.domains.target("train")
        if self.domains.source_set is not None:  # two sets of images: of one shape
            source = self.domains.source("train")
            hint = "give source and target images of one shape"
            check_image_shape(target.image_shape, source, "the target domain", hint)
        gen_config = getattr(self.policy.generator, "config", None)
        if getattr(gen_config, "image_size", None) is not None:
            # before any work: a generator built for other images fails here, in one line
            shape = (int(getattr(gen_config, "channels", 1)), *gen_config.image_size)  # type: ignore[union-attr]
            check_image_shape(shape, target, "the generator")
        self.env = BatchedDenoiseEnv(
            config.batch_size,
            reward=reward,
            dataset=target,  # the target domain's train split, already chosen
            domain="all",
            split="all",
            source_classes=config.source_classes or None,
            target_classes=config.target_classes or None,
            noise=config.noise,
            noise_level=config.noise_level,
            evaluate=False,
            device=self.device,
            seed=config.seed,
        )
        self.reward = self.env.task.reward
        if self.reward is not None and isinstance(self.reward, torch.nn.Module):
            for p in self.reward.parameters():  # the reward model is frozen: agents never update it
                p.requires_grad_(False)
        self.aux_term = SourceAuxTerm(
            images=self.domains.source("train").images,
            noise=make_noise(config.noise, config.noise_level),
            batch_size=config.aux_batch_size,
            seed=config.seed + 1,
        )
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr)
        self.missing: list[str] = []
        """One line per thing the run cannot measure (a good-rate without a judge of these images)."""
        if evaluator is None:
            if config.evaluator is None and not digit_judge_applies(target.image_shape):
                evaluator = Evaluator(None)  # no judge knows these images: PSNR/SSIM and the reward only
            else:
                require_judge(dataset_name(config.dataset), config.evaluator)
                evaluator = Evaluator.from_pretrained(config.evaluator, device=self.device)
        check_judge_shape(evaluator, target.image_shape, "the evaluator")
        if not evaluator.has_classifier:
            self.missing.append(missing_judge_note(target.image_shape))
            warnings.warn(self.missing[-1], NotMeasuredWarning, stacklevel=2)
        self.evaluator = evaluator
        self.noise = make_noise(config.noise, config.noise_level)

        self.step = 0
        self.labels_used = 0
        self.callbacks = CallbackList(
            [CheckpointCallback(config.checkpoint_every), EvalCallback(config.eval_every), *callbacks]
        )
        self.logger = MetricLogger(self.run_dir)
        self._initial_eval: Evaluation | None = None
        self.final_evaluation: Evaluation | None = None
        """The last :meth:`finish` evaluation (``None`` before training ends)."""

    # -- what agents implement -------------------------------------------------------------------------

    @abstractmethod
    def update(self) -> dict[str, float]:
        """One update of the policy; returns its metrics (``losses/*``, ``reward/*``, ...)."""

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Agent state beyond policy, optimiser and RNGs: ``(tensors, json_values)``."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`extra_state` returned (default: nothing to restore)."""

    # -- shared pieces of every loss -------------------------------------------------------------------

    def observe(self) -> torch.Tensor:
        """Start a batch of episodes and return their noisy target images ``(N, C, H, W)``.

        With ``config.group_size = K`` each run of ``K`` consecutive images is one input repeated.
        """
        group = self.config.group_size
        obs, _ = self.env.reset_torch(options={"group": group} if group > 1 else None)
        return obs

    def act(self, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions without gradients and score them in the environment.

        The episodes end without an autoreset: the next :meth:`observe` starts the next batch, so one
        update costs one batch of episodes.

        Returns:
            ``(actions (N, C, H, W), rewards (N,))``.
        """
        with torch.no_grad():
            actions = self.policy.sample(noisy, generator=self.rng)
        _, reward, _, _, _ = self.env.step_torch(actions, autoreset=False)
        return actions, reward.float()

    def regularizers(self, noisy: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``kl * KL + aux * L_aux + consistency * L_cons`` on a batch, and each term for logging.

        A term whose weight is 0 is computed without gradients, so it is logged but adds nothing.

        Args:
            noisy: ``(N, C, H, W)`` target observations.
        """
        cfg = self.config
        terms: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.kl > 0):
            terms["kl"] = self.policy.kl(self.reference, noisy).mean()
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.aux > 0):
            terms["aux"] = self.aux_term.loss(self.policy)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.consistency > 0):
            with torch.no_grad():
                initial = self.reference.mode(noisy)
            terms["consistency"] = (self.policy.mode(noisy) - initial).pow(2).mean()
        total = cfg.kl * terms["kl"] + cfg.aux * terms["aux"] + cfg.consistency * terms["consistency"]
        return total, {f"losses/{k}": v.item() for k, v in terms.items()}

    def optimize(self, loss: torch.Tensor, what: str = "loss") -> float:
        """Backpropagate ``loss`` and take one optimiser step; returns the gradient norm.

        Raises:
            NonFiniteLossError: if the loss is NaN or inf (nothing is updated).
        """
        if not torch.isfinite(loss):
            saved = getattr(self, "_checkpoint_step", None)
            where = (
                f"the last good checkpoint (step {saved}) is in {self.run_dir}"
                if saved is not None
                else "no checkpoint was written before it (set checkpoint_every to keep one)"
            )
            raise NonFiniteLossError(
                f"step {self.step + 1}: {what} is {loss.item()}; stopped, {where} (lower --lr, or check the "
                "reward model)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = self.clipped_step(self.config.max_grad_norm)
        if not math.isfinite(norm):
            raise NonFiniteLossError(f"step {self.step + 1}: gradient of {what} is not finite; stopped")
        return norm

    # -- the loop --------------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run updates until ``config.steps`` (or a callback stops), then evaluate and save.

        Returns:
            The history and the final evaluation; see :class:`TrainResult`.
        """
        cfg = self.config
        write_json(self.run_dir / "config.json", {"agent": self.name, **cfg.to_dict()})
        self.callbacks.init(self)
        self.callbacks.on_train_start()
        history: list[dict[str, float]] = []
        start = time.perf_counter()
        bar = tqdm(
            total=cfg.steps, initial=self.step, desc=f"finetune[{self.name}]", disable=not cfg.progress
        )
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                self.policy.train()
                metrics = self.update()
                self.step += 1
                metrics["charts/labels_used"] = float(self.labels_used)
                metrics["charts/sps"] = cfg.batch_size / max(time.perf_counter() - t0, 1e-9)
                keep_going = self.callbacks.on_step(metrics)
                self.logger.log(self.step, metrics)
                self.callbacks.on_step_end()  # checkpoints: after the step's row is logged
                history.append(metrics)
                bar.update(1)
                if "reward/mean" in metrics:
                    bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}")
                if not keep_going:
                    break
        finally:
            bar.close()
        self.save_state()
        final = self.finish(time.perf_counter() - start)
        self.callbacks.on_train_end()
        self.logger.close()
        return TrainResult(self.step, history, final, self.run_dir, self.final_evaluation)

    # -- evaluation ------------------------------------------------------------------------------------

    def validate(self) -> dict[str, float]:
        """Evaluator metrics on a fixed subset of the validation split (``eval/*``); no training data."""
        target = self.domains.target("val")
        target = target.subset(torch.arange(min(len(target), self.config.eval_size)))
        source = self.domains.source("val")
        generator = self.policy.generator
        t = evaluate_on(generator, target, "target", self.noise, self.evaluator, seed=10_000).summary()
        s = evaluate_on(generator, source, "source", self.noise, self.evaluator, seed=10_001).summary()
        return {
            "eval/target_good_rate": t["good_rate"],
            "eval/target_psnr": t["psnr"],
            "eval/source_good_rate": s["good_rate"],
            "eval/source_psnr": s["psnr"],
        }

    def initial_evaluation(self) -> Evaluation:
        """The frozen initial generator's test-split evaluation (computed once per generator and task)."""
        if self._initial_eval is None:
            cfg, ev = self.config, self.evaluator
            key = (
                _digest(self.reference.generator),
                _digest(ev.classifier) if ev.classifier is not None else "no classifier",
                ev.prob_threshold,
                ev.ssim_threshold,
                ev.corr_threshold,
                json.dumps([data_record(getattr(cfg, k)) for k in ("dataset", "source_data", "target_data")]),
                cfg.data_dir,
                cfg.source_classes,
                cfg.target_classes,
                cfg.noise,
                cfg.noise_level,
            )
            if key not in _INITIAL_EVALUATIONS:
                _INITIAL_EVALUATIONS[key] = evaluate_generator(
                    self.reference.generator, self.domains, self.noise, self.evaluator, split="test", seed=0
                )
            self._initial_eval = _INITIAL_EVALUATIONS[key]
        return self._initial_eval

    def _mean_reward(self, domain: DomainEvaluation) -> float:
        """Mean reward of a domain evaluation's outputs (the test split's, on fixed noisy inputs)."""
        scores = [
            call_reward(
                self.reward, x.to(self.device), y.to(self.device), c.to(self.device), k.to(self.device)
            )
            for x, y, c, k in zip(
                domain.noisy.split(256),
                domain.outputs.split(256),
                domain.clean.split(256),
                domain.classes.split(256),
            )
        ]
        return float(torch.cat(scores).float().mean())

    def finish(self, seconds: float) -> dict[str, Any]:
        """Final test-split evaluation against the initial generator.

        Writes the fine-tuned generator checkpoint, before/after image grids and, last, ``evaluation.json``:
        a run directory with ``evaluation.json`` is complete (sweeps count a run as finished by it).
        """
        from hfrl.evaluation import save_grid

        after = evaluate_generator(
            self.policy.generator, self.domains, self.noise, self.evaluator, split="test", seed=0
        )
        self.final_evaluation = after
        final = {
            "agent": self.name,
            "steps": self.step,
            "labels_used": self.labels_used,
            "seconds": seconds,
            **compare(self.initial_evaluation(), after),
            "per_class": after.rows(),
        }
        if self.missing:  # no judge: the reward on the same test outputs is what says more than PSNR/SSIM
            final["not_measured"] = list(self.missing)
            if self.reward is not None:
                final["target_reward_before"] = self._mean_reward(self.initial_evaluation().target)
                final["target_reward_after"] = self._mean_reward(after.target)
        gen = self.policy.generator
        config = gen.config.to_dict() if hasattr(gen, "config") else {}
        save_checkpoint(
            self.run_dir / "generator", gen, "generator", config, {"agent": self.name, "steps": self.step}
        )
        save_grid(after, self.run_dir / "grid_after.png")
        save_grid(self.initial_evaluation(), self.run_dir / "grid_before.png")
        write_json(self.run_dir / "evaluation.json", final)  # last: the run's "done" marker
        return final

    # -- checkpoints and resume ------------------------------------------------------------------------

    def save_state(self) -> Path:
        """Write a resumable checkpoint: ``RUN_DIR/state.safetensors``, and ``state.json`` to read.

        The checkpoint is one file: the tensors (policy, optimiser moments, RNG states, the agent's extra
        tensors) and, in its safetensors metadata, the JSON document (step, labels used, optimiser
        settings, the environments' RNG states, the agent's extra values) with its SHA-256. That file is
        written to ``state.safetensors.tmp``, flushed to disk and renamed over the old one, so the rename is
        the single commit point: a process killed at any moment leaves the previous checkpoint or the new
        one, whole. ``state.json`` is a copy of the document for people and tools, written after the
        commit; :meth:`load_state` never trusts it over the checkpoint (and rewrites it when it is stale).
        """
        tensors: dict[str, torch.Tensor] = {
            f"policy.{k}": v.detach().cpu().contiguous() for k, v in self.policy.state_dict().items()
        }
        optim_tensors, opt_json = self.optimizer_state()
        tensors.update(optim_tensors)
        tensors["rng.trainer"] = self.rng.get_state()
        tensors["rng.aux"] = self.aux_term.generator.get_state()
        extra_t, extra_v = self.extra_state()
        tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in extra_t.items()})
        doc = {
            "format": STATE_FORMAT,
            "format_version": STATE_FORMAT_VERSION,
            "agent": self.name,
            "step": self.step,
            "labels_used": self.labels_used,
            "optimizer": opt_json,
            "env_rngs": [g.bit_generator.state for g in self.env.sub_env_np_randoms],  # type: ignore[union-attr]
            "extra": extra_v,
        }
        weights = self.write_state(tensors, doc, self.step)
        self._checkpoint_step = self.step
        return weights

    def load_state(self, run_dir: str | Path | None = None) -> None:
        """Restore policy, optimiser, RNGs and counters from a checkpoint written by :meth:`save_state`.

        Raises:
            CheckpointError: one line naming the file, for a missing, truncated or damaged checkpoint (a
                document whose digest does not match, a missing or mistyped key, a missing tensor or one of
                the wrong shape, another agent's checkpoint); nothing is half-restored silently.
        """
        run_dir = Path(run_dir or self.run_dir)
        weights = run_dir / f"{STATE_FILE}.safetensors"
        doc, tensors, where = self.read_state(run_dir)
        self._check_state(doc, tensors, where)
        self._check_same_data(run_dir)
        own = run_dir.resolve() == self.run_dir.resolve()  # another run's directory is only read
        self.refresh_state_copy(run_dir)
        try:
            load_into(self.policy, {k[7:]: v for k, v in tensors.items() if k.startswith("policy.")}, weights)
            self.load_optimizer_state(tensors, doc["optimizer"], self.device)
            self.rng.set_state(tensors["rng.trainer"])
            self.aux_term.generator.set_state(tensors["rng.aux"])
            for g, s in zip(self.env.sub_env_np_randoms, doc["env_rngs"]):
                g.bit_generator.state = s  # type: ignore[union-attr]
            self.load_extra_state(
                {k[6:]: v for k, v in tensors.items() if k.startswith("extra.")}, doc.get("extra", {})
            )
        except CheckpointError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{weights}: the checkpoint does not fit this trainer ({msg})") from None
        self.step = int(doc["step"])
        self.labels_used = int(doc["labels_used"])
        self._checkpoint_step = self.step
        if own:  # rows a killed run logged after its checkpoint
            self.logger.train_csv.drop_after(self.step)
            self.logger.eval_csv.drop_after(self.step)

    def _check_same_data(self, run_dir: Path) -> None:
        """Refuse to resume a run on other images than it was trained on (user images are checked by hash).

        Raises:
            CheckpointError: one line naming both, when the run's ``config.json`` records other data.
        """
        path = run_dir / "config.json"
        try:
            saved = json.loads(read_text(path) or "null")
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            return  # no readable config: nothing recorded to compare with
        for name in ("dataset", "source_data", "target_data"):
            if name not in saved:
                continue
            was, now = saved[name], data_record(getattr(self.config, name, None))
            if (is_data_record(was) or is_data_record(now)) and not same_data(was, now):
                raise CheckpointError(
                    f"{run_dir} was trained on {name} {_describe_data(was)}, not {_describe_data(now)}; "
                    "resume it with the same data"
                )

    def _check_state(self, doc: Any, tensors: dict[str, torch.Tensor], where: Path) -> None:
        """Check a checkpoint's document and tensors before anything is restored (one-line errors)."""
        if not isinstance(doc, dict) or doc.get("format", STATE_FORMAT) != STATE_FORMAT:
            raise CheckpointError(f"{where}: not an hfrl trainer checkpoint")
        if doc.get("agent") != self.name:
            raise CheckpointError(f"{where}: checkpoint of agent {doc.get('agent')!r}, not {self.name!r}")
        for key, kind in (("step", int), ("labels_used", int), ("optimizer", dict), ("env_rngs", list)):
            if key not in doc:
                raise CheckpointError(f"{where}: the state document has no {key!r}")
            value = doc[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CheckpointError(f"{where}: {key!r} must be {kind.__name__}, got {value!r:.60}")
            if kind is int and value < 0:
                raise CheckpointError(f"{where}: {key!r} must be >= 0, got {value}")
        opt = doc["optimizer"]
        if not isinstance(opt.get("param_groups"), list) or not isinstance(opt.get("state"), dict):
            raise CheckpointError(f"{where}: 'optimizer' needs a 'param_groups' list and a 'state' object")
        if not isinstance(doc.get("extra", {}), dict):
            raise CheckpointError(f"{where}: 'extra' must be an object")
        if len(doc["env_rngs"]) != len(self.env.sub_env_np_randoms):
            raise CheckpointError(
                f"{where}: {len(doc['env_rngs'])} environment RNG states for {self.env.num_envs} environments "
                "(another batch_size?)"
            )
        for key in ("rng.trainer", "rng.aux"):
            if key not in tensors:
                raise CheckpointError(f"{where}: tensor {key!r} is missing")
        self.check_optimizer_tensors(tensors, where)


def _digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _describe_data(value: Any) -> str:
    return describe_record(value) if is_data_record(value) else repr(value)
