"""The settings of supervised pre-training (:class:`PretrainConfig`), importable without torch.

:mod:`hfrl.pretrain` re-exports it; it lives here so that ``hfrl pretrain --help`` shows its defaults
without importing torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from hfrl.errors import ConfigError
from hfrl.names import DataSource
from hfrl.tasks import DataConfig


@dataclass
class PretrainConfig(DataConfig):
    """Settings of source-domain pre-training.

    The defaults reproduce the seed paper's situation on the embedded MNIST digits: trained on noisy
    '0's, a ``conv`` generator with a 64-unit bottleneck denoises '0's well and paints 0-like shapes over
    many other digits.
    """

    source_data: str | DataSource | None = None
    """The source domain's own images (replaces ``dataset``; ``--source-data PATH``): all of them are used."""
    max_value: float | None = None
    """The largest value your images can take; they are divided by it (see :func:`hfrl.data.as_images`)."""
    family: str = "conv"
    """Generator family: ``conv``, ``unet`` or ``mlp``."""
    width: int = 32
    """Generator width."""
    bottleneck: int = 64
    """Dense bottleneck size (``conv``/``mlp``)."""
    epochs: int = 60
    """Maximum number of epochs; each draws fresh noise."""
    batch_size: int = 32
    """Mini-batch size."""
    lr: float = 2e-3
    """Adam learning rate."""
    patience: int = 15
    """Stop when validation PSNR has not improved for this many epochs."""
    seed: int = 0
    """Seed of initialisation, shuffling and noise."""
    split_seed: int = 0
    """Seed of the train/val/test split."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    extra: dict = field(default_factory=dict)
    """Free-form notes stored with the checkpoint."""

    def __post_init__(self) -> None:
        """Fill the unset data settings from the task; reject values training cannot use, in one line.

        Raises:
            ConfigError: for an unknown task, a non-positive or non-finite learning rate, sizes below 1,
                a negative or non-finite noise level, or a negative seed.
        """
        self.fill_task()
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        for name in ("width", "bottleneck", "epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.noise_level, (int, float)) or not 0 <= self.noise_level < math.inf:
            raise ConfigError(f"noise_level must be a finite number >= 0, got {self.noise_level!r}")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        if self.source_data is not None and not isinstance(self.dataset, str | None):
            raise ConfigError("give either dataset (--data) or source_data (--source-data), not both")
        from hfrl.data import resolve_data_fields  # imports torch: only when a config is built

        resolve_data_fields(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field; the user's images as their record (name, shape, SHA-256)."""
        from hfrl.data import data_record

        return {f.name: data_record(getattr(self, f.name)) for f in dataclasses.fields(self)}
