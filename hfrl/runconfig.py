"""One file describes a whole run: the ``hfrl demo`` configuration, its TOML form and its flags.

:class:`DemoConfig` is a typed dataclass with a docstring under every field. The same fields are

* keys of a TOML file, grouped into tables for reading (``[data]``, ``[feedback]``, ``[reward]``,
  ``[finetune]``; a few run-wide keys at the top) — :func:`load_config` / :func:`dumps_config`;
* command-line flags, one per field, named after it (``finetune_steps`` is ``--finetune-steps``, booleans
  also have ``--no-...``) — :func:`add_config_flags` / :func:`resolve_config`.

Precedence: the defaults, then ``--config FILE``, then flags. A run directory keeps the resolved
configuration as ``config.toml``, so ``hfrl demo --config RUN/config.toml`` runs it again. An unknown
key, a value of the wrong type or one out of range is a :class:`~hfrl.errors.ConfigError`: one line that
names the file and the key.

The machinery is generic: any dataclass with a ``SECTIONS`` class variable (table name -> field names)
and simple field types (``int``, ``float``, ``bool``, ``str``, their optional forms and
``tuple[int, ...]``) works with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import textwrap
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hfrl.errors import ConfigError
from hfrl.fields import base_type, field_docs, field_types, read_field, type_name
from hfrl.tasks import TaskConfig, replace_with_task, task_fields_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

C = TypeVar("C")

SELECTIONS = ("active", "random")
"""How :func:`hfrl.experiments.labels.collect_labels` picks what to ask after its first (random) round."""


@dataclass
class DemoConfig(TaskConfig):
    """Everything one ``hfrl demo`` run does: the seed paper's pipeline end to end.

    The defaults keep a CPU run to a few minutes. Their time per stage is measured by
    ``scripts/bench_demo.py`` (``bench-results/demo.md``); their result on each task is in the README.
    """

    SECTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "data": (
            "task",
            "dataset",
            "data_dir",
            "source_classes",
            "target_classes",
            "noise",
            "noise_level",
            "generator",
            "pool",
            "labeler",
            "evaluator",
        ),
        "feedback": (
            "labels",
            "selection",
            "rounds",
            "candidates",
            "ensemble",
            "flip_rate",
            "human",
            "host",
            "port",
            "open_browser",
            "human_timeout",
        ),
        "reward": (
            "reward_reference",
            "denoiser_steps",
            "denoiser_radius",
            "denoiser_stride",
            "reward_steps",
            "reward_lr",
            "reward_members",
            "monotone",
        ),
        "finetune": (
            "agent",
            "finetune_steps",
            "batch_size",
            "lr",
            "kl",
            "aux",
            "consistency",
            "eval_every",
            "eval_size",
        ),
    }
    """TOML tables and the fields each holds; the other fields are top-level keys."""

    # -- the run ---------------------------------------------------------------------------------------
    seed: int = 0
    """Seeds the noise, the label choice, every network's initialisation and the fine-tuning."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    threads: int = 1
    """torch CPU threads (>= 0; 0 keeps torch's choice). One by default: on a machine whose cores are shared
    with other work, two torch threads wait on each other and can run much slower than one; on an idle
    machine two are faster. Results can differ in the last digits between thread counts."""
    out: str | None = None
    """Run directory (default ``runs/demo-TIMESTAMP``). Rerunning into a directory replaces its results."""
    progress: bool = True
    """Show progress bars and live timers within stages (a line per stage start and end is always printed)."""

    # -- data (with the task's settings of TaskConfig: every one left unset takes the task's value) -------
    pool: int = 0
    """Noisy target-domain train images whose outputs may be put to labelers (0: all of them, 2,700 for
    the embedded digits). They also train the label-free denoiser inside the reward."""
    labeler: str | None = None
    """Classifier checkpoint of the synthetic labeler (default: the task's; the shipped one judges digits)."""

    # -- feedback --------------------------------------------------------------------------------------
    labels: int = 200
    """Labels to collect. 0 skips labelling and fine-tunes against the label-free similarity reward."""
    selection: str = "active"
    """``active``: after a random first round, ask about the outputs a small reward ensemble trained on
    the labels so far disagrees on most; ``random``: every round at random."""
    rounds: int = 4
    """Rounds of questions the labels are split into (each round is one query in the feedback store)."""
    candidates: int = 1000
    """Unasked outputs scored per active round (a random subset of the pool; 0: the whole pool)."""
    ensemble: int = 3
    """Members (bootstrap resamples) of the small reward ensembles whose disagreement picks active queries."""
    flip_rate: float = 0.0
    """Synthetic labeler's probability of a wrong answer (mimics human error; not used with ``human``)."""
    human: bool = False
    """Put the questions to a person on the labelling page instead of the synthetic labeler."""
    host: str = "127.0.0.1"
    """Address the labelling page binds with ``human`` (beyond loopback it requires a token)."""
    port: int = 8765
    """Port of the labelling page (0 picks a free one)."""
    open_browser: bool = True
    """Try to open the labelling page in a browser (only where a desktop session is available)."""
    human_timeout: float = 3600.0
    """Most seconds to wait for a person's labels, all rounds together."""

    # -- reward ----------------------------------------------------------------------------------------
    reward_reference: str | None = None
    """The label-free estimate of the clean input that the similarity reward compares outputs with: ``n2s``
    (a Noise2Self denoiser trained on the noisy target images; suits white noise) or ``classical`` (a
    scikit-image denoiser tuned on the source domain's noisy/clean pairs; suits spatially correlated noise,
    which blind-spot self-supervision cannot learn). Default: the task's."""
    denoiser_steps: int = 400
    """Noise2Self steps of the label-free denoiser the similarity reward compares outputs with (>= 1). More
    steps give a better estimate and so a better reward, at a proportional cost in time; the default keeps
    the demo short (``scripts/bench_finetune.py`` uses more: the denoiser's estimate bounds what the reward
    can teach, see the README's fine-tuning table)."""
    denoiser_radius: int | None = None
    """Half-width of the denoiser's blind spot: 0 hides single pixels (Noise2Self, for white noise), more
    hides a square, for spatially correlated noise (default: the task's)."""
    denoiser_stride: int | None = None
    """Pixel-shuffle factor of the denoiser: it learns on sub-images of every stride-th pixel, whose noise
    is nearly independent (1: whole images; default: the task's)."""
    reward_steps: int = 150
    """Optimiser steps per reward-model member (a logistic regression on three similarity features)."""
    reward_lr: float = 0.05
    """Learning rate of each member (> 0). The similarity reward has four parameters: at the CNNs' much
    lower rate its head hardly leaves its random start (members then disagree even on the sign of a weight,
    and fine-tuning against one such model destroyed the good-rate); at 0.03-0.1 it converges the same from
    every seed."""
    reward_members: int = 1
    """Members of the reward the generator is fine-tuned against (>= 1; 1: one model on every label). With
    the head converged, a mean of several scores the same after fine-tuning and multiplies its cost."""
    monotone: bool = True
    """Keep the reward's weights on SSIM, correlation and RMSE to the denoised input at their natural signs,
    so that no output gains by being less alike in one of them (an unconstrained fit on 200 random labels
    put a negative weight on SSIM, and fine-tuning against it drove the good-rate to almost nothing)."""

    # -- fine-tuning -----------------------------------------------------------------------------------
    agent: str = "reward-grad"
    """Fine-tuning agent (``hfrl finetune --agent`` names it; ``reward-grad`` is the seed paper's)."""
    finetune_steps: int = 150
    """Agent updates."""
    batch_size: int = 64
    """Noisy target images per update."""
    lr: float = 1e-4
    """Adam learning rate. With ``kl`` it sets how far the generator moves per update: at higher rates
    reward-grad overshoots the reward's good region within a few dozen updates (the settings were chosen on
    the default task's validation curves of seed 0 and measured on other seeds by
    ``scripts/bench_finetune.py``; see the README's demo section)."""
    kl: float = 0.002
    """Weight of KL(pi || pi_ref) to the source generator's policy: for reward-grad a trust region on the
    generator's output. Without it reward-grad against a similarity reward first improves, then drifts to
    copies of the reward's label-free estimate (blurred digits the evaluator rejects); with it the good-rate
    levels off instead. Too large a weight freezes the generator."""
    aux: float = 1.0
    """Weight of supervised denoising on noisy source images (keeps the source skill)."""
    consistency: float = 1.0
    """Weight of the pixel MSE to the source generator's output on the same input (seed paper)."""
    eval_every: int = 25
    """Evaluate on the validation split every this many updates, for the training curves (0: never)."""
    eval_size: int = 270
    """Validation target images per periodic evaluation."""

    def __post_init__(self) -> None:
        self.fill_task()
        for name in ("seed", "threads", "pool", "labels", "candidates", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "rounds", "ensemble", "reward_members", "denoiser_steps", "reward_steps", "finetune_steps", "batch_size",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_size < 1:
            raise ConfigError(f"eval_size must be >= 1, got {self.eval_size}")
        if int(self.denoiser_radius) < 0 or int(self.denoiser_stride) < 1:  # type: ignore[arg-type]
            raise ConfigError(
                f"denoiser_radius must be >= 0 and denoiser_stride >= 1, got {self.denoiser_radius} and "
                f"{self.denoiser_stride}"
            )
        from hfrl.data import DATASETS
        from hfrl.device import DEVICE_CHOICES
        from hfrl.noise import make_noise

        make_noise(str(self.noise), 0.0)  # an unknown model or parameter is one line here
        from hfrl.names import REWARD_REFERENCES

        for name, allowed in (
            ("dataset", DATASETS),
            ("device", DEVICE_CHOICES),
            ("reward_reference", REWARD_REFERENCES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if not 0.0 <= self.flip_rate <= 0.5:
            raise ConfigError(f"flip_rate must be in [0, 0.5], got {self.flip_rate}")
        if (
            self.noise_level < 0
            or self.lr <= 0
            or self.reward_lr <= 0
            or min(self.kl, self.aux, self.consistency) < 0
        ):
            raise ConfigError("noise_level, kl, aux and consistency must be >= 0, lr and reward_lr > 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        if self.human_timeout <= 0:
            raise ConfigError(f"human_timeout must be > 0, got {self.human_timeout}")
        if self.selection == "active" and self.labels and self.ensemble < 2:
            raise ConfigError(
                f"active selection needs an ensemble of at least 2 members, got {self.ensemble}"
            )
        if self.labels and self.labels < self.rounds:
            raise ConfigError(f"labels ({self.labels}) must be at least rounds ({self.rounds})")
        if (
            not self.target_classes
            or not self.source_classes
            or min(self.source_classes + self.target_classes) < 0
        ):
            raise ConfigError("source_classes and target_classes must be non-empty lists of classes >= 0")


DemoConfig.TASK_FIELDS = task_fields_of(DemoConfig)

# ------------------------------------------------------------------------------------------ field facts


def _sections(cls: type) -> dict[str, tuple[str, ...]]:
    return dict(getattr(cls, "SECTIONS", {}))


def _section_of(cls: type) -> dict[str, str | None]:
    """Field name -> its TOML table (``None`` for top-level keys)."""
    where: dict[str, str | None] = {f.name: None for f in dataclasses.fields(cls)}
    for section, names in _sections(cls).items():
        for name in names:
            if name not in where:
                raise ConfigError(f"{cls.__name__}.SECTIONS names {name!r}, which is not a field")
            where[name] = section
    return where


# ------------------------------------------------------------------------------------------ TOML in


def config_from_dict(cls: type[C], values: Mapping[str, Any], where: str = "config") -> C:
    """Build ``cls`` from a TOML document (top-level keys plus one table per section).

    Args:
        cls: The config dataclass.
        values: The parsed document; keys left out keep their defaults.
        where: What to call the source in errors (usually the file name).

    Raises:
        ConfigError: for an unknown key or table, a key in the wrong table, a wrong type or a bad value.
    """
    section_of = _section_of(cls)
    sections = _sections(cls)
    flat: dict[str, Any] = {}

    def take(key: str, value: Any, table: str | None) -> None:
        label = f"{table}.{key}" if table else key
        if key not in section_of:
            raise ConfigError(f"{where}: unknown key {label!r}")
        if section_of[key] != table:
            home = section_of[key]
            raise ConfigError(f"{where}: {label!r} belongs {f'in [{home}]' if home else 'at the top level'}")
        try:
            flat[key] = read_field(cls, key, value, label, text=False)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    for key, value in values.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key!r} must be a table ([{key}])")
            for inner, inner_value in value.items():
                take(inner, inner_value, key)
        else:
            take(key, value, None)
    try:
        return cls(**flat)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: str | Path, cls: type[C] = DemoConfig) -> C:  # type: ignore[assignment]
    """Read a TOML config file.

    Raises:
        ConfigError: for a missing or unreadable file, invalid TOML, or a bad key or value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({' '.join(str(exc).split())})") from None
    return config_from_dict(cls, doc, str(path))


# ------------------------------------------------------------------------------------------ TOML out


def toml_value(value: Any) -> str:
    """One value in TOML syntax, written by tomli-w (booleans, integers, finite floats, strings, lists)."""
    import tomli_w

    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"TOML cannot hold the non-finite number {value}")
    if isinstance(value, (list, tuple)):  # on one line (tomli-w writes one item a line)
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    try:
        return tomli_w.dumps({"x": value}).partition(" = ")[2].rstrip("\n")
    except TypeError:
        raise ConfigError(f"TOML cannot hold a {type(value).__name__}") from None


def dumps_config(config: Any, header: str | None = None) -> str:
    """The config as TOML, each key under its docstring as a comment; ``None`` values are commented out.

    Args:
        config: A config dataclass instance.
        header: Comment lines for the top of the file.
    """
    cls = type(config)
    docs = field_docs(cls)
    section_of = _section_of(cls)
    lines: list[str] = [f"# {line}" if line else "#" for line in (header or "").splitlines()]

    def emit(name: str) -> None:
        for line in textwrap.wrap(docs.get(name, ""), 100):
            lines.append(f"# {line}")
        value = getattr(config, name)
        lines.append(f"# {name} = (unset)" if value is None else f"{name} = {toml_value(value)}")

    if lines:
        lines.append("")
    for f in dataclasses.fields(cls):
        if section_of[f.name] is None:
            emit(f.name)
    for section, names in _sections(cls).items():
        lines += ["", f"[{section}]"]
        for name in names:
            emit(name)
    return "\n".join(lines) + "\n"


def dump_config(config: Any, path: str | Path, header: str | None = None) -> Path:
    """Write :func:`dumps_config` to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_config(config, header), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ flags


def flag_name(field_name: str) -> str:
    """``finetune_steps`` -> ``--finetune-steps``."""
    return "--" + field_name.replace("_", "-")


def _text_parser(cls: type, name: str) -> Any:
    """An argparse ``type`` that reads a flag's text with :func:`hfrl.fields.read_field`."""

    def parse(text: str) -> Any:
        try:
            return read_field(cls, name, text, flag_name(name))
        except ConfigError as exc:
            if typing.get_origin(base) is tuple:  # the class list's own message says what to write
                raise argparse.ArgumentTypeError(str(exc)) from None
            raise argparse.ArgumentTypeError(f"{flag_name(name)} expects {kind}, got {text!r}") from None

    base, _ = base_type(field_types(cls)[name])
    kind = type_name(base)
    parse.__name__ = kind
    return parse


def add_config_flags(parser: argparse.ArgumentParser, cls: type = DemoConfig) -> None:
    """Add one flag per field of ``cls`` (help = the field's docstring and default).

    Flags the user does not give stay out of the namespace, so a config file's values survive them.
    """
    docs = field_docs(cls)
    hints = field_types(cls)
    section_of = _section_of(cls)
    groups: dict[str | None, Any] = {None: parser.add_argument_group("run")}
    for section in _sections(cls):
        groups[section] = parser.add_argument_group(section)
    for f in dataclasses.fields(cls):
        base, _ = base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%")
        group = groups[section_of[f.name]]
        if base is bool:
            group.add_argument(
                flag_name(f.name),
                dest=f"cfg_{f.name}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                flag_name(f.name),
                dest=f"cfg_{f.name}",
                type=_text_parser(cls, f.name),
                default=argparse.SUPPRESS,
                metavar=f.name.upper(),
                help=help_text,
            )


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set by flag, already typed."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_")}


def resolve_config(
    config_file: str | Path | None, overrides: Mapping[str, Any], cls: type[C] = DemoConfig
) -> C:  # type: ignore[assignment]
    """Defaults, then the config file (if any), then ``overrides`` (field name -> typed value).

    Raises:
        ConfigError: for a bad file, an unknown field or a value out of range.
    """
    base = load_config(config_file, cls) if config_file is not None else cls()
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    if not overrides:
        return base
    return replace_with_task(base, getattr(cls, "TASK_FIELDS", ()), **overrides)


__all__ = [
    "SELECTIONS",
    "DemoConfig",
    "add_config_flags",
    "config_from_dict",
    "dump_config",
    "dumps_config",
    "field_docs",
    "flag_name",
    "flag_values",
    "load_config",
    "resolve_config",
    "toml_value",
]
