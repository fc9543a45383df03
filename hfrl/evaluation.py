"""Evaluate a generator on the source and target domains: per-class metrics, retention, PSNR gains, grids.

The same seed always draws the same noisy test images, so two generators evaluated with the same seed are
compared on identical inputs — which is what the per-image PSNR gain of the seed paper needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from hfrl.data import Domains, ImageSet
from hfrl.judges import Evaluator
from hfrl.metrics import psnr, psnr_gain_stats
from hfrl.noise import NoiseModel


@torch.no_grad()
def generate(generator: nn.Module, noisy: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Run ``generator`` over ``noisy`` ``(N, C, H, W)`` in batches on its own device; returns CPU outputs.

    A module without parameters or buffers (a classical denoiser) runs on the CPU.
    """
    tensors = [*generator.parameters(), *generator.buffers()][:1]
    device = tensors[0].device if tensors else torch.device("cpu")
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(chunk.to(device)).cpu() for chunk in noisy.split(batch_size)])
    generator.train(was_training)
    return out


@dataclass(frozen=True)
class DomainEvaluation:
    """Per-image results on one domain.

    Attributes:
        name: ``source`` or ``target``.
        classes: ``(N,)`` class of each image.
        noisy: ``(N, C, H, W)`` inputs.
        outputs: ``(N, C, H, W)`` generator outputs.
        clean: ``(N, C, H, W)`` clean images (used for scoring only).
        psnr_noisy: ``(N,)`` PSNR of the noisy input.
        psnr: ``(N,)`` PSNR of the output.
        ssim: ``(N,)`` SSIM of the output.
        good: ``(N,)`` evaluator verdicts.
        judged: Whether an evaluator with a classifier gave the verdicts; without one (images no shipped
            judge knows) ``good_rate`` is NaN, written as ``null``: not measured.
    """

    name: str
    classes: torch.Tensor
    noisy: torch.Tensor
    outputs: torch.Tensor
    clean: torch.Tensor
    psnr_noisy: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    good: torch.Tensor
    judged: bool = True

    def summary(self, mask: torch.Tensor | None = None) -> dict[str, float]:
        """Mean metrics over all images (or those in ``mask``)."""
        m = mask if mask is not None else torch.ones_like(self.good)
        return {
            "n": int(m.sum()),
            "psnr_noisy": float(self.psnr_noisy[m].mean()),
            "psnr": float(self.psnr[m].mean()),
            "ssim": float(self.ssim[m].mean()),
            "good_rate": float(self.good[m].float().mean()) if self.judged else math.nan,
        }

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class: ``domain``, ``class`` and :meth:`summary`'s metrics."""
        return [
            {"domain": self.name, "class": int(c), **self.summary(self.classes == c)}
            for c in torch.unique(self.classes).tolist()
        ]


@dataclass(frozen=True)
class Evaluation:
    """A generator's results on both domains."""

    source: DomainEvaluation
    target: DomainEvaluation

    def rows(self) -> list[dict[str, Any]]:
        """Per-class rows (source classes first), then one ``all`` row per domain."""
        rows = self.source.per_class() + self.target.per_class()
        for dom in (self.source, self.target):
            rows.append({"domain": dom.name, "class": "all", **dom.summary()})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: per-class rows and domain means."""
        return {
            "source": self.source.summary(),
            "target": self.target.summary(),
            "per_class": self.rows(),
        }


def evaluate_on(
    generator: nn.Module, images: ImageSet, name: str, noise: NoiseModel, evaluator: Evaluator, seed: int
) -> DomainEvaluation:
    """Evaluate ``generator`` on ``images`` corrupted by ``noise`` with a fixed seed."""
    noisy = noise(images.images, torch.Generator().manual_seed(seed))
    outputs = generate(generator, noisy)
    judgement = evaluator.judge(outputs, images.images, images.labels)
    return DomainEvaluation(
        name=name,
        classes=images.labels.clone(),
        noisy=noisy,
        outputs=outputs,
        clean=images.images,
        psnr_noisy=psnr(noisy, images.images),
        psnr=psnr(outputs, images.images),
        ssim=judgement.ssim,
        good=judgement.good,
        judged=evaluator.has_classifier,
    )


def evaluate_generator(
    generator: nn.Module,
    domains: Domains,
    noise: NoiseModel,
    evaluator: Evaluator,
    *,
    split: str = "test",
    seed: int = 0,
) -> Evaluation:
    """Evaluate a generator on one split of the source and target domains.

    Args:
        generator: Maps ``(B, C, H, W)`` noisy images to outputs in ``[0, 1]``.
        domains: Source/target definition.
        noise: Corruption of the clean images.
        evaluator: The independent judge.
        split: Which split (``test`` for reports).
        seed: Noise seed; keep it fixed to compare generators on identical inputs.
    """
    return Evaluation(
        source=evaluate_on(generator, domains.source(split), "source", noise, evaluator, seed),
        target=evaluate_on(generator, domains.target(split), "target", noise, evaluator, seed + 1),
    )


def compare(before: Evaluation, after: Evaluation) -> dict[str, Any]:
    """What fine-tuning changed, on identical inputs.

    Returns:
        ``target_good_rate`` and ``source_good_rate`` before/after, ``source_psnr_change`` (retention; negative
        means forgetting), ``target_psnr_change``, and the seed paper's per-image ``target_psnr_gain``
        (mean, std, max, min, share_improved) and ``source_psnr_gain``.
    """
    sb, sa = before.source.summary(), after.source.summary()
    tb, ta = before.target.summary(), after.target.summary()
    return {
        "target_good_rate_before": tb["good_rate"],
        "target_good_rate_after": ta["good_rate"],
        "source_good_rate_before": sb["good_rate"],
        "source_good_rate_after": sa["good_rate"],
        "target_psnr_change": ta["psnr"] - tb["psnr"],
        "source_psnr_change": sa["psnr"] - sb["psnr"],
        "target_psnr_gain": psnr_gain_stats(after.target.psnr, before.target.psnr),
        "source_psnr_gain": psnr_gain_stats(after.source.psnr, before.source.psnr),
    }


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Render rows of dicts as an aligned plain-text table (floats with 3 significant decimals)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    table = [columns] + [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_grid(evaluation: Evaluation, path: str | Path, per_class: int = 6, scale: int = 2) -> Path:
    """Save a PNG grid: one row per class, each example as noisy | output | clean.

    Args:
        evaluation: Results to show.
        path: Output PNG.
        per_class: Examples per class.
        scale: Integer upscaling (nearest neighbour) so that 28x28 digits are visible.
    """
    tiles = []
    for dom in (evaluation.source, evaluation.target):
        for c in torch.unique(dom.classes).tolist():
            idx = torch.nonzero(dom.classes == c).flatten()[:per_class]
            for i in idx.tolist():
                tiles.append(torch.cat([dom.noisy[i], dom.outputs[i], dom.clean[i]], dim=2))  # (1, H, 3W)
            pad = per_class - len(idx)
            tiles.extend([torch.zeros_like(tiles[-1])] * pad)
    grid = make_grid(torch.stack(tiles), nrow=per_class, padding=2, pad_value=0.5)
    if scale > 1:
        grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, str(path))
    return path
