"""Options shared by several subcommands, so each is spelt and documented once."""

from __future__ import annotations

import argparse
from pathlib import Path

from hfrl.data import DATASETS
from hfrl.device import DEVICE_CHOICES
from hfrl.noise import DEFAULT_LEVEL, DEFAULT_NOISE, NOISE_MODELS


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


def add_data(parser: argparse.ArgumentParser) -> None:
    """Dataset, class split and noise options."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset", default="mnist-embedded", choices=DATASETS, help="dataset (default: %(default)s)"
    )
    group.add_argument("--data-dir", default=None, help="folder of torchvision datasets (full datasets only)")
    group.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    group.add_argument(
        "--source-classes", default="0", help="source-domain classes, e.g. 0 or 0,1 (default: %(default)s)"
    )
    group.add_argument("--target-classes", default="1-9", help="target-domain classes (default: %(default)s)")
    group.add_argument(
        "--noise",
        default=DEFAULT_NOISE,
        choices=tuple(NOISE_MODELS),
        help="noise model (default: %(default)s)",
    )
    group.add_argument(
        "--noise-level",
        type=non_negative_float,
        default=DEFAULT_LEVEL,
        help="noise strength (default: %(default)s)",
    )


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
