"""Regenerate the shipped diffusion checkpoints in ``hfrl/assets`` from fixed seeds.

Writes, each as ``NAME.safetensors`` + ``NAME.json``:

* ``stroke_detector_labeler``   — the synthetic labeler's stroke detector (``cnn``, 7s half 0, seed 11);
* ``stroke_detector_evaluator`` — the independent evaluator's stroke detector (``lenet``, half 1, seed 22);
* ``ddpm_sevens`` — a DDPM on the crossed-7 mix (415 plain embedded 7s, 15 % of them crossed, seed 0);
* ``ddpm_digits`` — a DDPM on all 5,000 embedded digits (the base model for HERO fine-tuning).

Usage::

    python scripts/train_ddpm.py [--only detectors|sevens|digits] [--steps N] [--device auto]
    python scripts/train_ddpm.py --find-crossed      # rerun the search for naturally crossed 7s

On a 2-core CPU the detectors take about a minute and each DDPM about 40 minutes (6,000 steps of 64
images); on a GPU a few minutes. Progress goes to stdout; the EMA weights are written every
``--checkpoint-every`` steps, so sampling can be checked while training runs.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hfrl.censoring import (
    CROSSED_FRACTION,
    CROSSED_SEED,
    DETECTOR_KIND,
    EVALUATOR_CHECKPOINT,
    EVALUATOR_RECIPE,
    LABELER_CHECKPOINT,
    LABELER_RECIPE,
    DetectorRecipe,
    StrokeJudge,
    crossed_sevens,
    detector_training_set,
    sevens,
    sevens_half,
    train_stroke_detector,
)
from hfrl.checkpoint import save_checkpoint
from hfrl.data import load_embedded_mnist
from hfrl.device import resolve_device, seed_everything
from hfrl.diffusion import (
    DDPM_DIGITS,
    DDPM_KIND,
    DDPM_SEVENS,
    DDPMTrainConfig,
    UNet2D,
    UNetConfig,
    count_parameters,
    train_ddpm,
)

UNET = UNetConfig()
"""16/32/64 channels at 28/14/7 pixels, 0.68 M parameters (see :class:`hfrl.diffusion.UNetConfig`)."""


def make_detectors(out: Path, device: torch.device) -> None:
    plain = sevens()
    for name, recipe in ((LABELER_CHECKPOINT, LABELER_RECIPE), (EVALUATOR_CHECKPOINT, EVALUATOR_RECIPE)):
        t0 = time.perf_counter()
        model = train_stroke_detector(sevens_half(plain, recipe.half), recipe, device=device).cpu()
        # Held out: the other half of the 7s with strokes the detector never saw.
        x, y = detector_training_set(sevens_half(plain, 1 - recipe.half), seed=recipe.stroke_seed + 1000)
        accuracy = float((model.probabilities(x).argmax(1) == y).float().mean())
        meta = {"recipe": asdict(recipe), "held_out_accuracy": accuracy, "classes": ["malign", "benign"]}
        save_checkpoint(out / name, model, DETECTOR_KIND, asdict(model.config), meta)
        print(
            f"{name}: {recipe.arch}, held-out accuracy {accuracy:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )


def make_ddpm(name: str, images: torch.Tensor, out: Path, args: argparse.Namespace, meta: dict) -> None:
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # weight initialisation
    model = UNet2D(UNET)
    config = DDPMTrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    print(f"{name}: {len(images)} images, {count_parameters(model):,} parameters, {config}", flush=True)

    def log(row: dict[str, float]) -> None:
        print(
            f"{name} step {row['step']:>6} loss {row['loss']:.4f} lr {row['lr']:.2e} {row['seconds']:.0f} s",
            flush=True,
        )

    def checkpoint(step: int, ema: UNet2D) -> None:
        doc = {**meta, "train": asdict(config), "steps_done": step, "unet_parameters": count_parameters(ema)}
        save_checkpoint(out / name, ema, DDPM_KIND, ema.config_dict(), doc)

    ema = train_ddpm(
        images, model, config, device=device, log=log, log_every=100,
        on_checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
    )  # fmt: skip
    checkpoint(config.steps, ema.cpu())
    print(f"{name}: wrote {out / name}", flush=True)


def find_crossed(seed: int) -> None:
    """One round of the cross-fitted search behind ``NATURALLY_CROSSED`` (on the 7s still kept)."""
    images = sevens()
    scores = torch.zeros(len(images))
    for half in (0, 1):
        recipe = DetectorRecipe("cnn", half, stroke_seed=seed + half, seed=seed, epochs=15)
        judge = StrokeJudge(train_stroke_detector(sevens_half(images, half, seed), recipe))
        other = (
            sevens_half(torch.arange(len(images))[:, None, None, None].float(), 1 - half, seed)
            .flatten()
            .long()
        )
        scores[other] = judge.malign_prob(images[other])
    order = torch.argsort(scores, descending=True)[:20]
    print("most likely crossed among the kept 7s (position among kept, score):")
    print([(int(i), round(float(scores[i]), 3)) for i in order])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "hfrl" / "assets")
    parser.add_argument("--only", choices=("detectors", "sevens", "digits"), action="append", default=None)
    parser.add_argument("--steps", type=int, default=6000, help="DDPM training steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--find-crossed", action="store_true", help="search the kept 7s for crossed ones")
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    if args.find_crossed:
        find_crossed(args.seed)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("detectors", "sevens", "digits"))
    if "detectors" in only:
        make_detectors(args.out, resolve_device(args.device))
    if "sevens" in only:
        mix = crossed_sevens(fraction=CROSSED_FRACTION, seed=CROSSED_SEED)
        meta = {"data": "crossed sevens", "crossed_fraction": CROSSED_FRACTION, "crossed_seed": CROSSED_SEED,
                "images": len(mix), "crossed": int(mix.crossed.sum())}  # fmt: skip
        make_ddpm(DDPM_SEVENS, mix.images, args.out, args, meta)
    if "digits" in only:
        data = load_embedded_mnist()
        make_ddpm(
            DDPM_DIGITS,
            data.images,
            args.out,
            args,
            {"data": "mnist-embedded, all digits", "images": len(data)},
        )


if __name__ == "__main__":
    main()
