"""Names shared by configs, the library and the CLI, importable without torch.

The modules that use them re-export them (:data:`hfrl.data.DATASETS`, :func:`hfrl.data.parse_classes`,
:data:`hfrl.generators.FAMILIES`); they live here so that building the ``hfrl`` parser (``--help``)
imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hfrl.errors import DataError

DATASETS = ("mnist-embedded", "mnist", "fashion-mnist", "kmnist", "emnist", "skimage-patches")
"""Datasets :func:`hfrl.data.load_dataset` reads."""
UNJUDGED_DATASETS = ("skimage-patches",)
"""Named datasets whose images no shipped judge reads (RGB patches, not 28x28 grey digits): runs on them
report PSNR/SSIM against the clean images and the reward, and no good-rate, unless given a classifier."""
USER_DATASET = "user"
"""What a run's saved config calls images the user gave (a tensor, an array, a dataset, a file or a folder),
beside their shape and content hash (:meth:`hfrl.data.ImageSet.record`)."""
DataSource = Any
"""The user's images in any form :func:`hfrl.data.to_image_set` takes (an ``ImageSet``, a tensor or array,
an ``(images, labels)`` pair, a torchvision-style dataset, a path)."""
DATA_FIELDS = ("dataset", "source_data", "target_data")
"""Config fields that may hold the user's images (turned into ``ImageSet`` once, when the config is made)."""
FAMILIES = ("conv", "unet", "mlp")
"""Generator architectures (:class:`hfrl.generators.GeneratorConfig` ``family``)."""
REWARD_REFERENCES = ("n2s", "classical")
"""Label-free estimates of the clean input the similarity reward can compare outputs with: ``n2s`` (a
blind-spot denoiser trained on the noisy target images) and ``classical`` (a scikit-image denoiser tuned on
the source domain's noisy/clean pairs); see :func:`hfrl.experiments.reward.prepare_reward`."""


def parse_classes(text: str | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"0"``, ``"1-9"`` or ``"1,3,5-7"`` (or pass through an iterable) into sorted classes."""
    if not isinstance(text, str):
        values = sorted({int(v) for v in text})
    else:
        values_set: set[int] = set()
        for chunk in text.replace(" ", "").split(","):
            if not chunk:
                continue
            try:
                if "-" in chunk[1:]:
                    lo, hi = chunk.split("-", 1) if not chunk.startswith("-") else (chunk, chunk)
                    values_set.update(range(int(lo), int(hi) + 1))
                else:
                    values_set.add(int(chunk))
            except ValueError:
                raise DataError(f"cannot read classes {text!r}; write e.g. 0 or 1-9 or 1,3,5-7") from None
        values = sorted(values_set)
    if not values or min(values) < 0:
        raise DataError(f"classes must be non-negative integers, got {text!r}")
    return tuple(values)
