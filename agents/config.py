"""Configuration shared by every fine-tuning agent.

Each agent has a dataclass that extends :class:`TrainerConfig` with its own fields; the CLI and sweep
grids set fields by name (``kl``, ``aux``, ``consistency``, ...), and a run directory keeps the resolved
config as JSON so that ``--resume`` rebuilds the same run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar

from hfrl.data import DATA_FIELDS, USER_DATASET, DataSource, data_record, resolve_data_fields
from hfrl.errors import ConfigError
from hfrl.noise import make_noise
from hfrl.tasks import DEFAULT_TASK, fill_from_task, task_fields_of

C = TypeVar("C", bound="TrainerConfig")


@dataclass
class TrainerConfig:
    """Settings every agent shares: the task, the objective's weights, optimisation and bookkeeping."""

    TASK_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Settings the task fills when they are left unset (set below, from the fields' names)."""

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
    generator: str | None = None
    """Generator checkpoint to start from (default: the task's shipped source generator)."""
    policy_space: str = "pixel"
    """Where the Gaussian policy lives: ``pixel`` or ``logit``."""
    log_std: float = -2.0
    """Initial log standard deviation of the policy."""
    learn_std: bool = False
    """Train the log standard deviation too."""

    # -- the task (every field left unset takes the named task's value, see hfrl.tasks) ------------------
    task: str = DEFAULT_TASK
    """Named task (``hfrl.tasks.TASKS``): dataset, domains, noise, source generator and judges."""
    dataset: str | DataSource | None = None
    """Dataset name (default: the task's), or your own images: an ``ImageSet``, a tensor or array
    ``(N, H, W)``/``(N, 1, H, W)``, an ``(images, labels)`` pair, a torchvision-style dataset or a
    ``pathlib.Path`` to images (``--data PATH``); their classes are split into domains as a named dataset's.
    A run directory records them as ``{"dataset": "user", shape, sha256}``, never the images."""
    data_dir: str | None = None
    """Folder of torchvision datasets (default: the task's)."""
    source_data: str | DataSource | None = None
    """Source-domain images of their own (with ``target_data``; replaces ``dataset`` and the classes), in
    any form ``dataset`` takes or a path (``--source-data PATH``): how unlabelled images give two domains."""
    target_data: str | DataSource | None = None
    """Target-domain images of their own (with ``source_data``; ``--target-data PATH``)."""
    max_value: float | None = None
    """The largest value your images can take (e.g. 16 for 0-16 integers, 4095 for 12-bit): they are
    divided by it. Needed for integers other than uint8 and floats outside [0, 1]; never guessed."""
    source_classes: tuple[int, ...] | None = None
    """Source-domain classes, the auxiliary loss's data (default: the task's)."""
    target_classes: tuple[int, ...] | None = None
    """Target-domain classes, where the policy acts (default: the task's)."""
    noise: str | None = None
    """Noise spec, e.g. ``gaussian`` or ``correlated:length=1`` (default: the task's)."""
    noise_level: float | None = None
    """Noise strength (default: the task's)."""
    evaluator: str | None = None
    """Classifier checkpoint of the independent evaluator that scores the results (default: the task's;
    the shipped digit classifier for the digit tasks; another dataset needs its own, e.g.
    ``scripts/bench_fashion.py`` trains one)."""

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
        filled = fill_from_task(
            {name: getattr(self, name) for name in self.TASK_FIELDS}, self.task, self.TASK_FIELDS
        )
        for name, value in filled.items():
            setattr(self, name, value)
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
        resolve_data_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field; user images as their record (name, shape, SHA-256), never pixels."""
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


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a config dataclass's fields (the string literal under each field), for ``--help``."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass's fields."""
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_field(cls: type, name: str, text: str) -> Any:
    """Parse the text ``text`` into the type of field ``name`` of config class ``cls``.

    Handles ``int``, ``float``, ``bool`` (``true/false/1/0/yes/no``), ``str``, optional values (``none``)
    and class tuples (``"1-9"``, ``"0,1"``).

    Raises:
        ConfigError: for an unknown field or a value of the wrong type.
    """
    import types
    import typing

    types_ = field_types(cls)
    if name not in types_:
        raise ConfigError(
            f"{name!r} is not a setting of {cls.__name__}; settings: {', '.join(sorted(types_))}"
        )
    hint = types_[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if typing.get_origin(hint) is tuple:
            from hfrl.data import parse_classes

            return parse_classes(text)
        return str(text)
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: cannot read {text!r} as {getattr(hint, '__name__', hint)}") from None


def with_images(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of config ``values`` whose user images are read and converted once.

    See :func:`resolve_data_fields`; the many configs of a comparison or sweep then share one image set.
    """
    out = dict(values)
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
    "DATA_FIELDS",
    "config_values",
    "with_images",
    "TrainerConfig",
    "coerce_field",
    "field",
    "field_docs",
    "field_types",
    "resolve_data_fields",
]
