"""Regenerate the checkpoints shipped in ``hfrl/assets`` from fixed seeds.

Writes, each as ``NAME.safetensors`` + ``NAME.json``:

* ``labeler_classifier``   — the synthetic labeler's digit classifier (``cnn``, data half 0, seed 11);
* ``evaluator_classifier`` — the independent evaluator's classifier (``lenet``, data half 1, seed 22);
* ``denoiser_correlated``  — the default task's source generator (``digits-correlated``), pre-trained on
  '0's under spatially correlated noise;
* ``denoiser_source``      — the ``digits-white`` task's source generator, pre-trained on noisy '0's
  (white noise, sigma 0.5);
* ``supervised_digits_correlated`` — the default task's supervised upper bound: the source generator's
  architecture trained on noisy/clean *target* pairs (the demo's fourth reference; no agent uses it);
* ``denoiser_patches_colour`` — the ``patches-colour`` task's source generator, pre-trained on noisy RGB
  patches of scikit-image's retinal fundus photograph (``--only denoiser-patches-colour``, about 2 minutes
  on one core), and ``supervised_patches_colour``, its supervised bound, trained on the task's target
  patches (``--only supervised-patches-colour``, about 3 minutes);
* ``flow_digits`` — a rectified-flow model (:mod:`hfrl.flow`) of all 5,000 embedded digits, the flow
  counterpart of ``ddpm_digits`` (which ``scripts/train_ddpm.py`` makes): the same 0.68 M-parameter U-Net
  predicting the velocity, trained for ``FLOW_STEPS`` steps of 32 images (seed 0).

Usage::

    python scripts/make_assets.py [--out hfrl/assets] [--only denoiser-correlated]

Takes a few minutes on a 2-core CPU.
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
from hfrl.diffusion import DDPMTrainConfig, UNet2D, UNetConfig, count_parameters
from hfrl.flow import FLOW_DIGITS, FLOW_KIND, FlowUNet2D, train_flow
from hfrl.judges import EVALUATOR_CHECKPOINT, LABELER_CHECKPOINT
from hfrl.pretrain import PretrainConfig, pretrain
from hfrl.tasks import get_task

SOURCE_GENERATORS = {
    "denoiser": "digits-white",
    "denoiser-correlated": "digits-correlated",
    "denoiser-patches-colour": "patches-colour",
}
"""``--only`` name -> the task whose source generator it trains (its asset name is the task's ``generator``)."""
SUPERVISED = {"supervised-correlated": "digits-correlated", "supervised-patches-colour": "patches-colour"}
"""``--only`` name -> the task whose supervised bound it trains (asset ``supervised_<task>``)."""
EPOCHS = {"patches-colour": (40, 10)}
"""Task -> (epochs, patience) of its generators where the digits' (100, 20) and 60 would take too long."""
FLOW_STEPS = 2000
"""Training steps of ``flow_digits`` (batch 32, as ``ddpm_digits``)."""


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


def make_denoiser(out: Path, seed: int, task: str) -> None:
    epochs, patience = EPOCHS.get(task, (100, 20))
    config = PretrainConfig(task=task, device="cpu", seed=seed, epochs=epochs, patience=patience)
    result = pretrain(config)
    gen_config = result.generator.config
    meta = {
        "pretrain": asdict(config),
        "best_val_psnr": result.best_val_psnr,
        "epochs_run": len(result.history),
    }
    name = get_task(task).generator
    save_checkpoint(out / name, result.generator, "generator", gen_config.to_dict(), meta)
    print(f"{name}: source val PSNR {result.best_val_psnr:.2f} dB after {len(result.history)} epochs")


def make_supervised(out: Path, seed: int, task_name: str) -> None:
    task = get_task(task_name)
    epochs, patience = EPOCHS.get(task.name, (60, 15))
    config = PretrainConfig(
        task=task.name,
        source_classes=task.target_classes,
        epochs=epochs,
        patience=patience,
        seed=seed,
        device="cpu",
    )
    result = pretrain(config, progress=False)
    meta = {"pretrain": asdict(config), "task": task.name, "note": "upper bound: trained on clean targets"}
    name = "supervised_" + task.name.replace("-", "_")
    save_checkpoint(out / name, result.generator, "generator", result.generator.config.to_dict(), meta)
    print(f"{name}: target val PSNR {result.best_val_psnr:.2f} dB after {len(result.history)} epochs")


def make_flow(out: Path, seed: int, steps: int = FLOW_STEPS) -> None:
    data = load_embedded_mnist()
    torch.manual_seed(seed)  # weight initialisation
    model = FlowUNet2D(UNetConfig())
    config = DDPMTrainConfig(steps=steps, batch_size=32, seed=seed)

    def log(row: dict[str, float]) -> None:
        if row["step"] % 500 == 0 or row["step"] == steps:
            print(
                f"{FLOW_DIGITS} step {row['step']:>5} loss {row['loss']:.4f} {row['seconds']:.0f} s",
                flush=True,
            )

    def checkpoint(step: int, ema: UNet2D) -> None:  # also while training runs, to check samples early
        meta = {
            "data": "mnist-embedded, all digits", "images": len(data), "train": asdict(config),
            "steps_done": step, "unet_parameters": count_parameters(ema),
        }  # fmt: skip
        save_checkpoint(out / FLOW_DIGITS, ema, FLOW_KIND, ema.config_dict(), meta)

    ema = train_flow(data.images, model, config, log=log, on_checkpoint=checkpoint, checkpoint_every=500)
    checkpoint(steps, ema.cpu())
    print(f"{FLOW_DIGITS}: {count_parameters(ema):,} parameters, {steps} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "hfrl" / "assets")
    parser.add_argument(
        "--only",
        choices=("labeler", "evaluator", *SOURCE_GENERATORS, *SUPERVISED, "flow-digits"),
        default=None,
    )
    parser.add_argument(
        "--flow-steps", type=int, default=FLOW_STEPS, help="flow_digits training steps (default: %(default)s)"
    )
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
    for only, task in SOURCE_GENERATORS.items():
        if args.only in (None, only):
            make_denoiser(args.out, args.seed, task)
    for only, task in SUPERVISED.items():
        if args.only in (None, only):
            make_supervised(args.out, args.seed, task)
    if args.only in (None, "flow-digits"):
        make_flow(args.out, args.seed, args.flow_steps)
    print(f"done in {time.perf_counter() - t0:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
