"""Configuration shared by every fine-tuning agent.

Each agent has a dataclass that extends :class:`TrainerConfig` with its own fields; the CLI and sweep
grids set fields by name (``kl``, ``aux``, ``consistency``, ...), and a run directory keeps the resolved
config as JSON so that ``--resume`` rebuilds the same run.

The built-in agents' configs live here too (each re-exported by its agent's module, e.g.
:class:`~hfrl.agents.ppo.PPOConfig`), with :data:`BUILTIN_CONFIGS` naming them: this module imports no
torch, so ``hfrl finetune --help`` lists every field without loading the trainers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, TypeVar

from hfrl.errors import ConfigError
from hfrl.fields import field_docs, field_types
from hfrl.names import DATA_FIELDS, USER_DATASET, DataSource
from hfrl.noise import make_noise
from hfrl.tasks import TaskConfig, task_fields_of

C = TypeVar("C", bound="TrainerConfig")


@dataclass
class TrainerConfig(TaskConfig):
    """Settings every agent shares.

    The task's (:class:`~hfrl.tasks.TaskConfig`), the objective's weights, your own images, optimisation
    and bookkeeping.
    """

    # -- the objective: reward - kl * KL(pi || pi_ref) - aux * L_aux - consistency * L_cons -------------
    kl: float = 0.1
    """Weight of the KL divergence to the frozen pretrained policy (closed form for Gaussian policies)."""
    aux: float = 1.0
    """Weight of the auxiliary loss: supervised denoising on source-domain pairs (keeps the source skill)."""
    consistency: float = 1.0
    """Weight of the pixel MSE to the frozen initial generator's output on the same input (seed paper)."""

    # -- the reward ------------------------------------------------------------------------------------
    reward: str | None = None
    """Reward-model checkpoint path, or ``"labeler"`` (oracle for tests/upper bounds). Python callers may
    pass a reward object to the trainer instead."""

    # -- the policy ------------------------------------------------------------------------------------
    policy_space: str = "pixel"
    """Where the Gaussian policy lives: ``pixel`` or ``logit``."""
    log_std: float = -2.0
    """Initial log standard deviation of the policy."""
    learn_std: bool = False
    """Train the log standard deviation too."""

    # -- your own images (the task's settings, from TaskConfig, come first) --------------------------------
    source_data: str | DataSource | None = None
    """Source-domain images of their own (with ``target_data``; replaces ``dataset`` and the classes), in
    any form ``dataset`` takes or a path (``--source-data PATH``): how unlabelled images give two domains."""
    target_data: str | DataSource | None = None
    """Target-domain images of their own (with ``source_data``; ``--target-data PATH``)."""
    max_value: float | None = None
    """The largest value your images can take (e.g. 16 for 0-16 integers, 4095 for 12-bit): they are
    divided by it. Needed for integers other than uint8 and floats outside [0, 1]; never guessed."""

    # -- optimisation ----------------------------------------------------------------------------------
    steps: int = 200
    """Number of updates."""
    batch_size: int = 64
    """Episodes per update."""
    group_size: int = 1
    """Actions sampled for each noisy input (must divide ``batch_size``): with ``K > 1`` a batch holds
    ``batch_size / K`` inputs, each answered ``K`` times, and the sampling agents compare rewards within
    each group (an RLOO / GRPO baseline) instead of across different inputs."""
    aux_batch_size: int = 32
    """Source-domain pairs per update for the auxiliary loss."""
    lr: float = 1e-4
    """Adam learning rate."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping (0 turns it off)."""

    # -- bookkeeping -----------------------------------------------------------------------------------
    seed: int = 0
    """Seeds the environment, the policy's samples and the auxiliary batches."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    eval_every: int = 0
    """Evaluate on the validation split every this many steps (0: only at the end)."""
    eval_size: int = 270
    """Validation target images per periodic evaluation."""
    checkpoint_every: int = 50
    """Save a resumable checkpoint every this many steps (0: only at the end)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        pair = self.source_data is not None or self.target_data is not None
        if pair:
            if self.source_data is None or self.target_data is None:
                raise ConfigError(
                    "give both source_data and target_data (--source-data/--target-data), or neither"
                )
            if self.dataset not in (None, USER_DATASET):
                raise ConfigError("give either dataset (--data) or source_data and target_data, not both")
            if self.source_classes or self.target_classes:
                raise ConfigError(
                    "source_classes/target_classes choose domains within dataset; with source_data and "
                    "target_data leave them unset"
                )
            self.dataset, self.source_classes, self.target_classes = USER_DATASET, (), ()
        self.fill_task()
        make_noise(str(self.noise), float(self.noise_level))  # a bad spec or level fails here, not mid-run
        for name in ("kl", "aux", "consistency", "lr", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("steps", "batch_size", "aux_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if int(self.group_size) < 1 or int(self.batch_size) % int(self.group_size):
            raise ConfigError(
                f"group_size must be >= 1 and divide batch_size ({self.batch_size}), got {self.group_size}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.policy_space not in ("pixel", "logit"):
            raise ConfigError(f"policy_space must be 'pixel' or 'logit', got {self.policy_space!r}")
        self.source_classes = tuple(int(c) for c in self.source_classes)  # type: ignore[union-attr]
        self.target_classes = tuple(int(c) for c in self.target_classes)  # type: ignore[union-attr]
        from hfrl.data import resolve_data_fields  # imports torch: only when a config is built

        resolve_data_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field; user images as their record (name, shape, SHA-256), never pixels."""
        from hfrl.data import data_record

        return {f.name: _plain(data_record(getattr(self, f.name))) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a dict, rejecting unknown keys with one clear error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**values)

    def replace(self: C, **changes: Any) -> C:
        """A copy with some fields changed (validated).

        Changing ``task`` resets the task's settings that ``changes`` does not set itself, so they follow
        the new task.
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # images kept, not records
        if "task" in changes:
            values.update({name: None for name in self.TASK_FIELDS if name not in changes})
        return self.from_dict({**values, **changes})


TrainerConfig.TASK_FIELDS = task_fields_of(TrainerConfig)


WEIGHTINGS = ("reward", "filter", "exp")
"""Sample weightings of :class:`RWLConfig`."""


@dataclass
class ReinforceConfig(TrainerConfig):
    """REINFORCE settings."""

    kl: float = 0.03
    """Weight of the KL divergence to the pretrained policy (per image, >= 0). Higher values keep the
    source PSNR but slow learning; 0 learns about as fast but gives up source PSNR (``hfrl sweep --grid
    kl=...`` measures the trade-off; the default's result: ``scripts/bench_finetune.py``,
    ``bench-results/finetune.md``)."""
    group_size: int = 8
    """Actions per noisy input; each is compared with the others for the same input (RLOO), so an
    advantage says which output was better for that input. ``1`` falls back to a batch-mean baseline, which
    learns less from the same budget (compare with ``hfrl bench``)."""
    normalize_advantages: bool = True
    """Divide advantages by their standard deviation (after subtracting the baseline)."""


@dataclass
class PPOConfig(TrainerConfig):
    """PPO settings (each update collects ``batch_size`` episodes, then optimises on them)."""

    kl: float = 0.01
    """Weight of the KL penalty to the pretrained policy (per image, >= 0). Higher values keep the
    source PSNR but slow learning; 0 learns fastest but loses source PSNR (``hfrl sweep --grid kl=...``
    measures the trade-off; the default's result: ``scripts/bench_finetune.py``,
    ``bench-results/finetune.md``)."""
    group_size: int = 8
    """Actions per noisy input, compared within the group for the advantage (see ``reinforce``)."""

    clip_range: float = 0.2
    """Clip of the probability ratio ``pi / pi_old``."""
    epochs: int = 4
    """Passes over each collected batch."""
    minibatch_size: int = 32
    """Episodes per gradient step within a pass."""
    target_kl: float | None = 0.5
    """Stop the passes over a batch early when the approximate KL(pi_old || pi) exceeds this (None: never).
    Per image, so it scales with the number of pixels; 0.5 suits 28x28 images."""
    adaptive_kl: bool = False
    """Adapt ``kl`` towards ``kl_target`` (Ziegler et al. 2019): double or halve it each update, starting
    from ``kl`` (which must then be > 0)."""
    kl_target: float = 1.0
    """Target KL(pi || pi_ref) per image for the adaptive coefficient."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.minibatch_size < 1 or self.epochs < 1 or not 0 < self.clip_range < 1:
            raise ConfigError("PPO needs minibatch_size >= 1, epochs >= 1 and 0 < clip_range < 1")
        if self.adaptive_kl and not (self.kl > 0 and self.kl_target > 0):
            # The coefficient is doubled or halved from kl: from 0 it would stay 0 and adapt nothing.
            raise ConfigError(
                f"adaptive_kl needs kl > 0 to start from and kl_target > 0, got kl={self.kl} "
                f"and kl_target={self.kl_target}"
            )


@dataclass
class RWLConfig(TrainerConfig):
    """Reward-weighted likelihood settings."""

    kl: float = 0.0
    """KL weight (off by default: Lee et al. regularise with the pre-training loss only)."""
    weighting: str = "exp"
    """``exp`` (default): ``exp(r / temperature)`` normalised to mean 1 within each input's group of
    ``group_size`` samples (reward-weighted regression that ranks the actions for one input);
    ``reward``: weight = reward clipped at 0 (Lee et al., who weight by human labels directly);
    ``filter``: weight 1 above ``threshold``, 0 below (filtered fine-tuning). A learned reward's scores
    differ little between samples, so ``reward`` weights barely move the generator; ``exp`` ranks them and
    moves it more, though RWL stays the slowest agent (``scripts/bench_finetune.py``,
    ``bench-results/finetune.md``)."""
    threshold: float = 0.5
    """Reward threshold of the ``filter`` weighting."""
    temperature: float = 0.01
    """Temperature of the ``exp`` weighting (reward units)."""
    group_size: int = 8
    """Samples per noisy input (see :class:`~hfrl.agents.config.TrainerConfig`)."""
    dataset_size: int = 512
    """Samples collected per round."""
    round_steps: int = 50
    """Updates per round (a new dataset is collected at the start of each round)."""
    lr: float = 3e-4
    """Adam learning rate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.dataset_size < 1 or self.round_steps < 1 or self.temperature <= 0:
            raise ConfigError("dataset_size and round_steps must be >= 1 and temperature > 0")


@dataclass
class RewardGradConfig(TrainerConfig):
    """Direct reward-gradient settings."""

    kl: float = 0.0
    """KL weight (off by default, as in the seed paper, whose guard against forgetting is the consistency
    term). For the Gaussian policy's mean the KL to the reference is the consistency term scaled by
    ``pixels / (2 sigma^2)`` (about 21,000 at the default ``log_std``), so kl 0.1 froze the generator."""
    lr: float = 3e-4
    """Adam learning rate (> 0). Ten times lower learns clearly less in the same number of steps (the
    default's result: ``scripts/bench_finetune.py``, ``bench-results/finetune.md``)."""


@dataclass
class DPOConfig(TrainerConfig):
    """DPO settings."""

    kl: float = 0.0
    """Explicit KL weight (off by default: ``beta`` already anchors DPO to the reference)."""
    beta: float = 0.05
    """Inverse temperature of the implicit reward (per image log-ratio units)."""
    lr: float = 3e-5
    """Adam learning rate."""
    labeler: str | None = None
    """Classifier checkpoint of the synthetic labeler that answers the pairs (default: the shipped digit
    classifier; another dataset needs its own)."""


@dataclass
class SB3Config(TrainerConfig):
    """Settings of the Stable-Baselines3 agents.

    One update is one SB3 rollout of ``batch_size`` episodes and SB3's own training on it.
    """

    lr: float = 3e-5
    """SB3 learning rate."""
    kl: float = 0.01
    """Weight of the KL reward term (SB3 sees it in the reward)."""
    n_epochs: int = 4
    """PPO epochs per rollout."""
    minibatch_size: int = 32
    """PPO minibatch size."""
    clip_range: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.0
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value-loss weight."""


@dataclass
class SB3A2CConfig(SB3Config):
    """Settings of the Stable-Baselines3 A2C agent (one gradient step per rollout, normalised advantages)."""

    lr: float = 1e-4
    """SB3 learning rate (> 0; A2C takes one gradient step per rollout, SB3's PPO several). Measured with
    ``scripts/bench_finetune.py --agents sb3-a2c`` (``bench-results/finetune.md``)."""


@dataclass
class SB3OffPolicyConfig(TrainerConfig):
    """Settings shared by the Stable-Baselines3 off-policy agents (``sb3-sac``, ``sb3-td3``).

    One update is one batch of ``batch_size`` one-step episodes added to SB3's replay buffer, then
    ``gradient_steps`` of SB3's own training on minibatches drawn from the buffer.
    """

    lr: float = 3e-5
    """Learning rate of the actor (the generator). With a CNN reward fitted to 400 labels, 80 updates of
    16 episodes raised the reward's mean on held-out inputs from 0.42 to 0.80 (SAC) and 0.62 (TD3); at
    1e-5 only to 0.43."""
    critic_lr: float = 3e-4
    """Learning rate of the critics, which start from nothing and must catch up with a pretrained actor
    (at the actor's 3e-5 their loss stayed 4x higher and the generator drifted: consistency MSE 0.15)."""
    kl: float = 0.0
    """Weight of the KL reward term (off by default). The closed-form KL depends on the input, not on the
    action, so the critics cannot credit it to actions: it only shifts their targets. SAC's logit-space KL
    also counts the drift of saturated background logits that changes no pixel (KL 50,000 at a consistency
    MSE of 0.008), and at 0.01 it outweighed the reward (critic loss 4e5). The consistency term is the
    action-dependent anchor."""
    buffer_size: int = 10_000
    """Transitions (episodes) the replay buffer keeps; checkpoints save the filled part."""
    learning_starts: int = 256
    """Episodes collected (with the generator acting, never SB3's uniform random actions) before the
    first gradient step."""
    minibatch_size: int = 64
    """Transitions per SB3 gradient step."""
    gradient_steps: int = 4
    """SB3 gradient steps per training update."""
    train_freq: int = 1
    """Train every this many updates (the others only collect)."""
    tau: float = 0.005
    """Polyak coefficient of the target networks."""
    gamma: float = 0.99
    """SB3's discount; episodes last one step, so the targets never bootstrap and it has no effect."""
    critic_width: int = 32
    """Channels of the image Q-networks' second convolution (the first has half as many)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("buffer_size", "minibatch_size", "train_freq"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_starts", "gradient_steps"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.critic_lr, (int, float)) or not 0 < self.critic_lr < float("inf"):
            raise ConfigError(f"critic_lr must be a finite number > 0, got {self.critic_lr!r}")
        if int(self.critic_width) < 2:
            raise ConfigError(f"critic_width must be at least 2, got {self.critic_width}")
        if not 0 < self.tau <= 1 or not 0 <= self.gamma <= 1:
            raise ConfigError(f"tau must be in (0, 1] and gamma in [0, 1], got {self.tau} and {self.gamma}")


@dataclass
class SB3SACConfig(SB3OffPolicyConfig):
    """Settings of the Stable-Baselines3 SAC agent (the generator's logits give the squashed Gaussian's mean).

    SAC's actions are ``tanh`` of a Gaussian, which SB3 maps onto the ``[0, 1]`` pixel range: a Gaussian
    over logits, so the policy lives in logit space (``policy_space = "logit"``) and ``log_std`` is in
    logit units.
    """

    policy_space: str = "logit"
    """SAC's squashed Gaussian is a logit-space policy; ``pixel`` is refused."""
    learn_std: bool = True
    """Train SAC's per-pixel log standard deviation (with the actor)."""
    ent_coef: float = 0.0
    """SAC's entropy coefficient (fixed). The entropy of a squashed Gaussian rewards pixels away from 0
    and 1, i.e. grey images, so the default leaves it out."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy_space != "logit":
            raise ConfigError(
                "sb3-sac acts with a tanh-squashed Gaussian, a Gaussian over logits: policy_space must be "
                f"'logit', got {self.policy_space!r}"
            )
        if not isinstance(self.ent_coef, (int, float)) or not 0 <= self.ent_coef < float("inf"):
            raise ConfigError(f"ent_coef must be a finite number >= 0, got {self.ent_coef!r}")


@dataclass
class SB3TD3Config(SB3OffPolicyConfig):
    """Settings of the Stable-Baselines3 TD3 agent (the generator is the deterministic actor).

    TD3 explores with Gaussian action noise of standard deviation ``exp(log_std)`` pixel units, so the
    policy that acts is the pixel-space Gaussian around the generator's output, and the KL term is taken
    to it.
    """

    policy_delay: int = 2
    """Critic updates per actor update."""
    target_policy_noise: float = 0.2
    """Target policy smoothing noise (SB3's ``[-1, 1]`` action units; unused with one-step episodes)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy_space != "pixel":
            raise ConfigError(
                f"sb3-td3 explores with Gaussian noise on pixels: policy_space must be 'pixel', got "
                f"{self.policy_space!r}"
            )
        if self.learn_std:
            raise ConfigError("sb3-td3 explores with fixed action noise (log_std): learn_std must be false")
        if int(self.policy_delay) < 1 or not self.target_policy_noise >= 0:
            raise ConfigError("policy_delay must be >= 1 and target_policy_noise >= 0")


@dataclass
class BlindSpotConfig(TrainerConfig):
    """Blind-spot self-supervision settings (``n2s-finetune``; ``n2s`` adds the U-Net's width)."""

    kl: float = 0.0
    """KL weight (off: the blind-spot loss is on the generator's mean)."""
    grid: int = 4
    """Predicted pixels are every ``grid``-th pixel in each direction (a random phase per update)."""
    radius: int = 0
    """Half-width of the blind spot: 0 hides single pixels; ``R`` hides a ``(2R + 1)``-pixel square, for
    noise correlated over about ``R`` pixels (``grid >= 2R + 2``)."""
    stride: int = 1
    """Pixel-shuffle factor: learn on sub-images of every ``stride``-th pixel (``n2s`` only)."""
    lr: float = 3e-4
    """Adam learning rate."""

    def __post_init__(self) -> None:
        from hfrl.blindspot import check_blindspot  # torch: not needed to read the fields (--help)

        super().__post_init__()
        check_blindspot(int(self.grid), int(self.radius), int(self.stride))


@dataclass
class Noise2SelfConfig(BlindSpotConfig):
    """Settings of a fresh self-supervised U-Net (``n2s``)."""

    aux: float = 0.0
    """Weight of supervised denoising of noisy source images (off: the baseline learns from the target
    inputs alone)."""
    consistency: float = 0.0
    """Weight of the MSE to the source generator's output (off: a fresh network owes it nothing)."""
    steps: int = 1000
    """Updates (the masked loss levels off after a few hundred; the estimate keeps improving)."""
    lr: float = 2e-3
    """Adam learning rate."""
    width: int = 16
    """Channels of the U-Net's first level."""


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


BUILTIN_CONFIGS: dict[str, type[TrainerConfig]] = {
    "reinforce": ReinforceConfig,
    "ppo": PPOConfig,
    "rwl": RWLConfig,
    "reward-grad": RewardGradConfig,
    "dpo": DPOConfig,
    "sb3-ppo": SB3Config,
    "sb3-a2c": SB3A2CConfig,
    "sb3-sac": SB3SACConfig,
    "sb3-td3": SB3TD3Config,
    "n2s": Noise2SelfConfig,
    "n2s-finetune": BlindSpotConfig,
}
"""The config class of every built-in agent, in the order :mod:`hfrl.agents` registers them."""


def with_images(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of config ``values`` whose user images are read and converted once.

    See :func:`resolve_data_fields`; the many configs of a comparison or sweep then share one image set.
    """
    out = dict(values)
    from hfrl.data import resolve_data_fields

    holder = SimpleNamespace(**{k: out.get(k) for k in (*DATA_FIELDS, "max_value")})
    resolve_data_fields(holder)
    out.update({k: getattr(holder, k) for k in DATA_FIELDS if k in out})
    return out


def config_values(config: TrainerConfig) -> dict[str, Any]:
    """``config.to_dict()`` with the user's images kept as images (not records): what rebuilds the config."""
    values = config.to_dict()
    values.update(
        {k: getattr(config, k) for k in DATA_FIELDS if not isinstance(getattr(config, k), (str, type(None)))}
    )
    return values


__all__ = [
    "BUILTIN_CONFIGS",
    "BlindSpotConfig",
    "DPOConfig",
    "Noise2SelfConfig",
    "PPOConfig",
    "RWLConfig",
    "ReinforceConfig",
    "RewardGradConfig",
    "SB3A2CConfig",
    "SB3Config",
    "SB3OffPolicyConfig",
    "SB3SACConfig",
    "SB3TD3Config",
    "TrainerConfig",
    "WEIGHTINGS",
    "DATA_FIELDS",
    "config_values",
    "with_images",
    "field",
    "field_docs",
    "field_types",
]
