"""Options shared by several subcommands, so each is spelt and documented once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hfrl.data import DATASETS, parse_classes
from hfrl.device import DEVICE_CHOICES
from hfrl.errors import ConfigError
from hfrl.noise import NOISE_MODELS, check_noise
from hfrl.tasks import DEFAULT_TASK, TASKS, fill_from_task


def existing_path(text: str) -> Path:
    """Argparse type: a path that must exist."""
    path = Path(text)
    if not path.exists() and not path.with_name(path.name + ".json").exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text}")
    return path


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
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
    parser.add_argument("--seed", type=int, default=default, help="random seed (default: %(default)s)")


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
