"""Regenerate the checkpoints shipped in ``hfrl/assets`` from fixed seeds.

Writes, each as ``NAME.safetensors`` + ``NAME.json``:

* ``labeler_classifier``   — the synthetic labeler's digit classifier (``cnn``, data half 0, seed 11);
* ``evaluator_classifier`` — the independent evaluator's classifier (``lenet``, data half 1, seed 22);
* ``denoiser_source``      — the default generator, pre-trained on noisy '0's (sigma 0.5).

Usage::

    python scripts/make_assets.py [--out hfrl/assets] [--only denoiser]

Takes about a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hfrl.checkpoint import save_checkpoint
from hfrl.classifiers import (
    EVALUATOR_RECIPE,
    LABELER_RECIPE,
    ClassifierConfig,
    ClassifierRecipe,
    classifier_half,
    train_classifier,
)
from hfrl.data import load_embedded_mnist
from hfrl.device import seed_everything
from hfrl.judges import EVALUATOR_CHECKPOINT, LABELER_CHECKPOINT
from hfrl.pretrain import PretrainConfig, pretrain

DENOISER = "denoiser_source"


def make_classifier(name: str, recipe: ClassifierRecipe, out: Path) -> None:
    data = load_embedded_mnist()
    train = classifier_half(data, recipe.half)
    held_out = classifier_half(data, 1 - recipe.half)
    config = ClassifierConfig(arch=recipe.arch)
    model = train_classifier(train, config, epochs=recipe.epochs, seed=recipe.seed)
    accuracy = float((model.probabilities(held_out.images).argmax(1) == held_out.labels).float().mean())
    meta = {"recipe": asdict(recipe), "held_out_accuracy": accuracy, "trained_on": train.name}
    save_checkpoint(out / name, model, "classifier", asdict(config), meta)
    print(f"{name}: {recipe.arch}, held-out accuracy {accuracy:.3f}")


def make_denoiser(out: Path, seed: int) -> None:
    config = PretrainConfig(device="cpu", seed=seed, epochs=100, patience=20)
    result = pretrain(config)
    gen_config = result.generator.config
    meta = {
        "pretrain": asdict(config),
        "best_val_psnr": result.best_val_psnr,
        "epochs_run": len(result.history),
    }
    save_checkpoint(out / DENOISER, result.generator, "generator", gen_config.to_dict(), meta)
    print(f"{DENOISER}: source val PSNR {result.best_val_psnr:.2f} dB after {len(result.history)} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "hfrl" / "assets")
    parser.add_argument("--only", choices=("labeler", "evaluator", "denoiser"), default=None)
    parser.add_argument("--seed", type=int, default=0, help="denoiser seed")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.only in (None, "labeler"):
        make_classifier(LABELER_CHECKPOINT, LABELER_RECIPE, args.out)
    if args.only in (None, "evaluator"):
        make_classifier(EVALUATOR_CHECKPOINT, EVALUATOR_RECIPE, args.out)
    if args.only in (None, "denoiser"):
        make_denoiser(args.out, args.seed)
    print(f"done in {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
