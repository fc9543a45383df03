"""Judges of the user's own images: ``hfrl judges train``, the recipe of the shipped digit judges.

The shipped labeler and evaluator know 28x28 handwritten digits only. For other labelled images a user
trains their own pair here: the two classifiers of :func:`~hfrl.classifiers.train_judge_pair` (``cnn`` for
the labeler, ``lenet`` for the evaluator; disjoint halves of the train split; different seeds), saved as
``OUT/labeler`` and ``OUT/evaluator`` (safetensors + JSON), usable as ``labeler=``/``evaluator=`` (and
``--labeler``/``--evaluator``) wherever a classifier checkpoint is taken. A judge then calls an output *good*
as the digit judges do (:class:`~hfrl.judges.DigitJudge`): its classifier gives the image's true class a
probability of at least 0.2, and its SSIM and pixel correlation to the clean image reach 0.65 and 0.5; the
three tests read grey or colour images of any size.

The classifiers train on the ``train`` split of the images (the split every run uses, seed 0) and are
measured on its ``test`` split, the images runs report on, which neither has seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hfrl.checkpoint import save_checkpoint
from hfrl.classifiers import JUDGE_ROLES, agreement, train_judge_pair
from hfrl.data import ImageSet
from hfrl.errors import DataError
from hfrl.runs import write_json

REPORT_NAME = "judges.json"
"""The summary :func:`train_judges` writes beside the two checkpoints."""


@dataclass(frozen=True)
class JudgesReport:
    """What :func:`train_judges` trained and measured.

    Attributes:
        labeler: Checkpoint path (without suffix) of the labeler's classifier.
        evaluator: Checkpoint path of the evaluator's classifier.
        labeler_accuracy: The labeler's accuracy on the held-out (test) images.
        evaluator_accuracy: The evaluator's accuracy on them.
        agreement: Share of held-out images both put in the same class.
        chance: Accuracy of always answering the most common held-out class.
        train_images: Labelled train images (each classifier trains on one half).
        held_out_images: Labelled held-out images.
        image_shape: ``(C, H, W)`` of the images.
        classes: The classes present.
    """

    labeler: str
    evaluator: str
    labeler_accuracy: float
    evaluator_accuracy: float
    agreement: float
    chance: float
    train_images: int
    held_out_images: int
    image_shape: tuple[int, int, int]
    classes: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = asdict(self)
        out["image_shape"], out["classes"] = list(self.image_shape), list(self.classes)
        return out

    def summary(self) -> str:
        """One line: both accuracies, their agreement and chance."""
        return (
            f"held-out accuracy: labeler {self.labeler_accuracy:.1%}, evaluator {self.evaluator_accuracy:.1%} "
            f"(chance {self.chance:.1%}); they agree on {self.agreement:.1%} of {self.held_out_images} held-out "
            "images"
        )


def _labelled(images: ImageSet, part: str, split_seed: int) -> ImageSet:
    """The labelled images of one split of ``images``."""
    split = images.split(part, split_seed)
    return split.subset(torch.nonzero(split.labels >= 0).flatten())


def train_judges(
    images: ImageSet,
    out_dir: str | Path,
    seed: int = 0,
    *,
    epochs: int = 15,
    width: int = 32,
    split_seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> JudgesReport:
    """Train, measure and save a synthetic labeler's and an evaluator's classifiers of the user's images.

    Args:
        images: Labelled images, grey or colour, any size from 8x8 (unlabelled ones are left out).
        out_dir: Folder of ``labeler``, ``evaluator`` (``.safetensors`` + ``.json`` each) and ``judges.json``.
        seed: Seeds the data halves and both classifiers (0: the shipped digit judges' recipe).
        epochs: Training epochs of each classifier.
        width: Channel multiplier of both classifiers.
        split_seed: Seed of the train/val/test split (runs use 0).
        device: Training device.
        progress: Show progress bars.

    Returns:
        The :class:`JudgesReport` (also written to ``out_dir/judges.json``).

    Raises:
        DataError: for images without labels, with one class only, or too few to hold any out.
    """
    if not images.labelled:
        raise DataError(
            f"{images.name}: judges need labelled images (a .npz with 'labels', one subfolder per class, or "
            "MNIST IDX files)"
        )
    train = _labelled(images, "train", split_seed)
    held_out = _labelled(images, "test", split_seed)
    if len(held_out) == 0:
        raise DataError(
            f"{images.name}: {len(images)} images leave none held out to measure judges; give more"
        )
    trained = train_judge_pair(
        train, held_out, seed=seed, epochs=epochs, width=width, device=device, progress=progress
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labeler, evaluator = trained["labeler"].model, trained["evaluator"].model
    agree = agreement(labeler, evaluator, held_out.images)
    chance = float(torch.bincount(held_out.labels).max()) / len(held_out)
    record = images.record()
    for role in JUDGE_ROLES:
        judge = trained[role]
        meta = {
            "role": role,
            "recipe": asdict(judge.recipe),
            "seed": seed,
            "held_out_accuracy": judge.accuracy,
            "agreement": agree,
            "trained_on": f"{judge.images} images: half {judge.recipe.half} of the train split of {images.name}",
            "data": {k: record[k] for k in ("name", "shape", "sha256")},
        }
        save_checkpoint(out / role, judge.model, "classifier", asdict(judge.config), meta)
    report = JudgesReport(
        labeler=str(out / "labeler"),
        evaluator=str(out / "evaluator"),
        labeler_accuracy=trained["labeler"].accuracy,
        evaluator_accuracy=trained["evaluator"].accuracy,
        agreement=agree,
        chance=chance,
        train_images=len(train),
        held_out_images=len(held_out),
        image_shape=images.image_shape,
        classes=train.classes,
    )
    write_json(out / REPORT_NAME, report.to_dict())
    return report
