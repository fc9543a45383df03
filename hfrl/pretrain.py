"""Supervised pre-training of a denoiser on the source domain (what ``hfrl pretrain`` runs)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hfrl.checkpoint import save_checkpoint
from hfrl.data import (
    Domains,
    ImageSet,
    load_dataset,
    to_image_set,
)
from hfrl.device import resolve_device
from hfrl.errors import HfrlError
from hfrl.generators import Generator, GeneratorConfig, build_generator
from hfrl.metrics import psnr
from hfrl.noise import make_noise
from hfrl.pretrain_config import PretrainConfig
from hfrl.runs import CSVLogger, write_json


class TrainingDiverged(HfrlError):
    """Pre-training produced a non-finite loss or never a finite validation PSNR (e.g. a too-high ``lr``)."""


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain`.

    Attributes:
        generator: The best generator (by validation PSNR), in eval mode.
        history: One dict per epoch: ``epoch``, ``train_loss``, ``val_psnr``, ``seconds``.
        best_val_psnr: Validation PSNR of the returned generator.
        checkpoint: Where it was saved, if an output directory was given.
    """

    generator: Generator
    history: list[dict]
    best_val_psnr: float
    checkpoint: Path | None = None


def _forget(logger: CSVLogger | None) -> None:
    """Remove the metrics file of a run that failed, so that a failed run saves nothing."""
    if logger is not None:
        logger.path.unlink(missing_ok=True)


def pretrain(
    config: PretrainConfig,
    data: ImageSet | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Train a denoiser with supervision on noisy/clean source-domain pairs.

    Args:
        config: Settings.
        data: Images to use instead of loading ``config.dataset``.
        out_dir: If given, write ``generator.safetensors``/``.json``, ``metrics.csv`` and ``config.json``.
        progress: Show a progress bar with validation PSNR.

    Returns:
        The best generator and the training history.

    Raises:
        TrainingDiverged: when a training loss or the validation PSNR is not finite (nothing is saved:
            ``out_dir`` gets no checkpoint, config or metrics).
    """
    device = resolve_device(config.device)
    if data is None and config.source_data is not None:
        data = to_image_set(config.source_data)
        domains = Domains.from_sets(data, None, config.split_seed)  # every image is the source domain
    else:
        data = data if data is not None else load_dataset(config.dataset, config.data_dir)
        if data.labelled:
            domains = Domains(
                data, tuple(config.source_classes), target_classes=(), split_seed=config.split_seed
            )
        else:  # no classes to choose from: every image is the source domain
            domains = Domains.from_sets(data, None, config.split_seed)
    train, val = domains.source("train"), domains.source("val")
    noise = make_noise(config.noise, config.noise_level)
    channels, height, width = train.image_shape  # the generator is built for the images it learns from
    gen_cfg = GeneratorConfig(
        config.family, config.width, config.bottleneck, (height, width), channels=channels
    )
    # Initialisation draws from torch's global generator: seed it inside fork_rng, so the caller's global
    # RNG state is left as it was (no hidden global seeding). Training draws from ``rng`` only.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_generator(gen_cfg)
    model = model.to(device)
    rng = torch.Generator().manual_seed(config.seed)
    val_noisy = noise(val.images, torch.Generator().manual_seed(config.seed + 1)).to(device)
    val_clean = val.images.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    logger = CSVLogger(Path(out_dir) / "metrics.csv") if out_dir else None
    history: list[dict] = []
    best_psnr, best_state, since_best = -float("inf"), copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(1, config.epochs + 1), desc="pretrain", disable=not progress)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        losses = []
        for idx in torch.randperm(len(train), generator=rng).split(config.batch_size):
            clean = train.images[idx]
            noisy = noise(clean, rng)
            loss = F.mse_loss(model(noisy.to(device)), clean.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                _forget(logger)
                raise TrainingDiverged(
                    f"pre-training diverged in epoch {epoch}: the training loss is {losses[-1]} "
                    f"(lr {config.lr:g} is too high?); nothing was saved"
                )
        model.eval()
        with torch.no_grad():
            val_psnr = float(psnr(model(val_noisy), val_clean).mean())
        if math.isnan(val_psnr) or val_psnr == -math.inf:
            _forget(logger)
            raise TrainingDiverged(
                f"pre-training diverged in epoch {epoch}: validation PSNR is {val_psnr} "
                f"(lr {config.lr:g} is too high?); nothing was saved"
            )
        row = {
            "epoch": epoch,
            "train_loss": sum(losses) / len(losses),
            "val_psnr": val_psnr,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if logger:
            logger.log(row)
        bar.set_postfix(val_psnr=f"{val_psnr:.2f}")
        if val_psnr > best_psnr + 1e-4:
            best_psnr, best_state, since_best = val_psnr, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    checkpoint = None
    if out_dir:
        meta = {
            "pretrain": config.to_dict(),
            "best_val_psnr": best_psnr,
            "epochs_run": len(history),
        }
        checkpoint = save_checkpoint(Path(out_dir) / "generator", model, "generator", gen_cfg.to_dict(), meta)
        write_json(Path(out_dir) / "config.json", config.to_dict())
    return PretrainResult(model, history, best_psnr, checkpoint)
