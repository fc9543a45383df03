"""Device selection and seeding helpers.

torch and NumPy are imported where they are used, so that :data:`DEVICE_CHOICES` (what ``--device``
offers) costs the CLI's ``--help`` nothing.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import TYPE_CHECKING

from hfrl.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a :class:`torch.device`.

    Args:
        device: ``"auto"`` picks CUDA when it is available and the CPU otherwise.

    Returns:
        The resolved device.

    Raises:
        ConfigError: for an unknown name, or ``cuda`` on a machine without a usable GPU.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} requested but CUDA is not available; use --device cpu or auto"
            )
        return torch.device(name)
    raise ConfigError(f"unknown device {device!r}; expected one of auto, cpu, cuda, cuda:N")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch for a script or CLI run and return a CPU generator with that seed.

    The library itself never calls this: library code takes explicit generators. Scripts and the CLI call
    it once at start-up so that third-party code (Stable-Baselines3, weight initialisation) is repeatable.

    Args:
        seed: Any non-negative integer.

    Returns:
        A ``torch.Generator`` on the CPU seeded with ``seed``.
    """
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code (SB3) reads the legacy global state
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    import torch

    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """The machine in one line: CPU, cores, torch threads, GPU (when there is one), torch version."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_name()}, {cores} cores, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}"
