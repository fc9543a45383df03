"""Options shared by several subcommands, so each is spelt and documented once.

Like every module of :mod:`hfrl.cli` it imports no torch: ``hfrl --help`` must answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from hfrl.device import DEVICE_CHOICES
from hfrl.errors import ConfigError
from hfrl.names import DATASETS, parse_classes
from hfrl.noise import NOISE_MODELS, check_noise
from hfrl.tasks import DEFAULT_TASK, TASKS, fill_from_task

CHECKPOINT_NAMES = {
    "generator": ("generator", "model", "finetune/generator"),
    "reward": ("model", "reward"),
    "evaluator": ("model", "evaluator", "classifier"),
}
"""Checkpoint names looked for inside a run directory given as ``--generator``/``--reward``/``--evaluator``,
in order: ``hfrl pretrain`` and ``hfrl finetune`` write ``generator.*``, ``hfrl demo`` writes
``finetune/generator.*``, ``hfrl reward train`` writes ``model.*``."""


def existing_path(text: str) -> Path:
    """Argparse type: a path that must exist."""
    path = Path(text)
    if not path.exists() and not path.with_name(path.name + ".json").exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text}")
    return path


def resolve_checkpoint(text: str | Path, role: str) -> Path:
    """The checkpoint a ``--generator``, ``--reward`` or ``--evaluator`` option names.

    One resolver for every command, so each accepts the same spellings.

    Accepted: ``NAME`` (``NAME.json`` + ``NAME.safetensors``), ``NAME.safetensors``, ``NAME.json``, or a run
    directory holding one of the names in :data:`CHECKPOINT_NAMES`.

    Args:
        text: What the user wrote.
        role: ``generator``, ``reward`` or ``evaluator`` (names the option in errors).

    Returns:
        The checkpoint path without suffix.

    Raises:
        ConfigError: ``no such file or directory`` when nothing is there; ``not a checkpoint`` for a file or
            folder that holds none.
    """
    path = Path(text)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    if path.is_dir():
        for name in CHECKPOINT_NAMES[role]:
            if (path / f"{name}.json").is_file():
                return path / name
        names = ", ".join(f"{n}.json" for n in CHECKPOINT_NAMES[role])
        raise ConfigError(f"--{role} {text}: not a checkpoint or a run directory holding one ({names})")
    if stem.with_name(stem.name + ".json").is_file():
        return stem
    if not path.exists() and not stem.with_name(stem.name + ".safetensors").exists():
        raise ConfigError(f"--{role} {text}: no such file or directory")
    raise ConfigError(f"--{role} {text}: not a checkpoint (expected NAME.json beside NAME.safetensors)")


def resolve_checkpoint_settings(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with its ``generator``, ``reward`` and ``evaluator`` paths resolved.

    Each goes through :func:`resolve_checkpoint`; ``reward='labeler'`` and unset ones are kept.
    """
    out = dict(values)
    for role in CHECKPOINT_NAMES:
        value = out.get(role)
        if value is None or value == "" or (role == "reward" and value == "labeler"):
            continue
        if isinstance(value, (str, Path)):
            out[role] = str(resolve_checkpoint(value, role))
    return out


def resolve_config_checkpoints(config: Any) -> Any:
    """A config dataclass with its ``generator``/``reward``/``evaluator`` fields resolved.

    See :func:`resolve_checkpoint_settings`; the same object is returned when nothing changes.
    """
    fields = {f.name for f in dataclasses.fields(config)}
    current = {role: getattr(config, role) for role in CHECKPOINT_NAMES if role in fields}
    resolved = resolve_checkpoint_settings(current)
    changes = {k: v for k, v in resolved.items() if v != current[k]}
    return dataclasses.replace(config, **changes) if changes else config


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0 (seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """Argparse type: a finite float > 0 (learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0.0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """Argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0.0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``."""
    parser.add_argument(
        "--device", default="auto", choices=DEVICE_CHOICES, help="where to compute (default: %(default)s)"
    )


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    """``--seed N``."""
    parser.add_argument(
        "--seed", type=non_negative_int, default=default, help="random seed (default: %(default)s)"
    )


def noise_spec(text: str) -> str:
    """Argparse type: a noise spec string (``gaussian``, ``correlated:length=1.5``, ...)."""
    try:
        return check_noise(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data(parser: argparse.ArgumentParser) -> None:
    """The task, and the dataset, class split and noise options that override it."""
    group = parser.add_argument_group("data (each setting defaults to the task's)")
    group.add_argument(
        "--task",
        default=DEFAULT_TASK,
        choices=tuple(TASKS),
        help="named task: data, domains, noise, source generator and judges (default: %(default)s)",
    )
    group.add_argument("--dataset", default=None, choices=DATASETS, help="dataset")
    group.add_argument("--data-dir", default=None, help="folder of torchvision datasets (full datasets only)")
    group.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    group.add_argument("--source-classes", default=None, help="source-domain classes, e.g. 0 or 0,1")
    group.add_argument("--target-classes", default=None, help="target-domain classes, e.g. 1-9")
    group.add_argument(
        "--noise",
        default=None,
        type=noise_spec,
        metavar="SPEC",
        help=f"noise model ({', '.join(NOISE_MODELS)}), with parameters as in correlated:length=1.5",
    )
    group.add_argument("--noise-level", type=non_negative_float, default=None, help="noise strength")


USER_DATA_HELP = (
    "a .npy file of images (N, H, W), (N, C, H, W) or (N, H, W, C) with C = 1 (grey) or 3 (RGB), any size "
    "from 8x8, a .npz file with arrays 'images' and optional 'labels', a folder of grey or colour images (one "
    "subfolder per class, as torchvision's ImageFolder, or a flat folder without labels) or a folder of "
    "MNIST IDX files; uint8 images are divided by 255, others need --max-value"
)
"""What ``--data PATH`` (and ``--source-data``/``--target-data``) accept."""


def add_user_data(parser: argparse.ArgumentParser, *, max_value: bool = False, source: bool = False) -> None:
    """``--data PATH``: the user's own images (and, when asked, ``--source-data`` and ``--max-value``).

    ``hfrl finetune`` gets ``--source-data``, ``--target-data`` and ``--max-value`` from its config fields;
    other commands ask for them here.
    """
    group = parser.add_argument_group("your own images (instead of a named dataset)")
    group.add_argument(
        "--data", default=None, metavar="PATH", help=f"your images: {USER_DATA_HELP}; labels give the classes"
    )
    if source:
        group.add_argument(
            "--source-data",
            default=None,
            metavar="PATH",
            help="the source domain's own images, every one of them used (same forms as --data)",
        )
    if max_value:
        group.add_argument(
            "--max-value",
            type=positive_float,
            default=None,
            metavar="X",
            help="the largest value your images can take (e.g. 16 for 0-16 integers, 4095 for 12-bit); they "
            "are divided by it. Needed for integers other than uint8 and floats outside [0, 1]",
        )


TASK_ARGS = ("dataset", "data_dir", "source_classes", "target_classes", "noise", "noise_level")
"""The options of :func:`add_data` that default to the task's settings."""


def resolve_task_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the data options of :func:`add_data` that were not given from ``--task`` (classes parsed).

    Returns:
        ``args``, changed in place.
    """
    values: dict[str, Any] = fill_from_task({n: getattr(args, n) for n in TASK_ARGS}, args.task, TASK_ARGS)
    for name in ("source_classes", "target_classes"):
        values[name] = parse_classes(values[name])
    vars(args).update(values)
    return args


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """``--out DIR``: the run directory."""
    parser.add_argument(
        "--out", default=None, help=f"run directory for the {what} (default: runs/{what}-TIMESTAMP)"
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_import(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE|FILE.py`` (repeatable): user code, e.g. one that registers an agent."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE|FILE.py",
        help="import a module or Python file first, e.g. one that calls hfrl.agents.register_agent (repeatable)",
    )
