"""What every online diffusion method shares in its configuration: task, sampling, update, labeler."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from hfrl.diffusion import DDPM_DIGITS, DDPM_KIND
from hfrl.diffusion_task import DEFAULT_TARGET_CLASS
from hfrl.errors import ConfigError
from hfrl.flow import FLOW_DIGITS, FLOW_KIND, FLOW_SDE_NOISE_LEVEL

C = TypeVar("C", bound="OnlineDiffusionConfig")


@dataclass
class OnlineDiffusionConfig:
    """What every online diffusion method shares. Field names are what the CLI and benchmarks set."""

    # -- the task --------------------------------------------------------------------------------------
    target_class: int = DEFAULT_TARGET_CLASS
    """The digit ``k`` people want (0-9; the base model draws it rarely: its rate is the "success before"
    column of ``scripts/bench_hero.py``'s ``bench-results/hero.md``)."""
    model: str = DDPM_KIND
    """The model to fine-tune: ``ddpm`` (the DDPM named by ``ddpm``), ``flow`` (the shipped rectified flow
    ``flow_digits``, :mod:`hfrl.flow`, sampled with Flow-GRPO's SDE), or a checkpoint path of either kind."""
    ddpm: str = DDPM_DIGITS
    """DDPM to fine-tune when ``model`` is ``ddpm``: a shipped asset name or a checkpoint path (default: all
    digits)."""
    rounds: int = 10
    """Feedback rounds: sample a batch, ask for feedback, update."""
    batch_size: int = 64
    """Samples generated and put to labelers per round (``d3po``: half as many pairs)."""

    # -- sampling --------------------------------------------------------------------------------------
    num_inference_steps: int = 10
    """DDIM steps per chain (the environment's episode length). 10 keeps CPU rounds to seconds; the
    shipped model's samples are about as often digits as at 20."""
    eta: float = 1.0
    """DDIM stochasticity; every step needs a non-zero variance for its log-probability (DDPO uses 1).
    DDPM only."""
    noise_level: float = FLOW_SDE_NOISE_LEVEL
    """Flow models only: ``a`` of Flow-GRPO's SDE sampler, ``sigma_t = a sqrt(t / (1 - t))`` (theirs: 0.7);
    every step needs a non-zero variance, as with ``eta``."""

    # -- the policy update -----------------------------------------------------------------------------
    adapter: str = "full"
    """What trains: ``full`` (every weight of the DDPM) or ``lora`` (the DDPM frozen, low-rank adapters on
    its convolutions and linear layers, :mod:`hfrl.lora`; the run directory then also keeps the adapters
    alone, ``adapters.*``: 0.5 MB at rank 8 beside the 2.7 MB model, whose layers are only 16-64 wide)."""
    lora_rank: int = 8
    """Rank ``r`` of the LoRA adapters (>= 1; in HERO's tuning lower ranks barely moved, see
    :class:`~hfrl.agents.hero.HeroConfig`)."""
    lora_alpha: float | None = None
    """LoRA scale numerator: updates are ``alpha / r`` times the low-rank product (default ``r``)."""
    lr: float = 3e-4
    """AdamW learning rate of the diffusion model (full fine-tune, > 0). Lower rates learn much more
    slowly; higher ones collapse the model within a round or two. Chosen with ``scripts/bench_hero.py``
    (``bench-results/hero.md``); RWL and D3PO keep a lower rate (see theirs)."""
    policy_epochs: int = 2
    """Passes over each round's samples."""
    minibatch_size: int = 32
    """Samples per gradient step; the gradient is accumulated over the chain's steps."""
    clip_range: float = 0.2
    """Clip of the per-step probability ratio (PPO, D3PO). Step log-probabilities sum over 784 pixels, so
    ratios move fast (DDPO clips at 1e-4 for Stable Diffusion)."""
    min_step_std: float = 0.05
    """Steps whose Gaussian is narrower than this (in ``[-1, 1]`` units) are not trained: the last steps of a
    short chain (std ~0.01) only clean up a finished image, and their log-ratios explode (even a small
    step moves them far more than the others)."""
    kl: float = 0.0
    """Weight of the per-step KL to the frozen base model (DPOK, Fan et al. 2023); 0 = off."""
    target_kl: float | None = None
    """Early stop of a round's PPO update (as Stable-Baselines3's ``target_kl``): once a minibatch's mean
    per-step approximate KL between the model and the round's sampling policy passes ``1.5 * target_kl``,
    its gradient is dropped and the round's remaining epochs are skipped. ``None``: every epoch runs. The
    KL sums over the image's pixels, so values near 1 are common here (a round's first Adam step alone can
    move full fine-tuning that far); a blown-up update reads several times more."""
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
        if not self.noise_level > 0.0:
            raise ConfigError(
                f"noise_level must be > 0 (log-probabilities need stochastic steps), got {self.noise_level}"
            )
        if self.model == FLOW_KIND and self.ddpm != DDPM_DIGITS:
            raise ConfigError(
                "ddpm names a DDPM checkpoint; to fine-tune a flow checkpoint set model to its path"
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

    def model_checkpoint(self) -> str:
        """The checkpoint (asset name or path) :attr:`model` and :attr:`ddpm` name."""
        if self.model == DDPM_KIND:
            return self.ddpm
        if self.model == FLOW_KIND:
            return FLOW_DIGITS
        return self.model

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


__all__ = ["OnlineDiffusionConfig"]
