"""Safe checkpoints: weights in safetensors, configuration in JSON, never pickle.

A checkpoint ``NAME`` is two files side by side: ``NAME.safetensors`` (tensors only) and ``NAME.json``::

    {"format": "hfrl-checkpoint", "format_version": 1, "kind": "generator",
     "config": {...}, "metadata": {...}}

``kind`` names the builder that turns ``config`` back into a module (see :data:`BUILDERS`), so a
checkpoint loads without the code that wrote it knowing anything about the caller. Every failure — a
missing, corrupt or truncated file, the wrong kind, weights that do not fit the config — raises
:class:`~hfrl.errors.CheckpointError` with one line naming the file and the mismatch.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from hfrl.errors import CheckpointError
from hfrl.runs import atomic_write

FORMAT = "hfrl-checkpoint"
FORMAT_VERSION = 1

BUILDERS: dict[str, str] = {
    "generator": "hfrl.generators:build_generator",
    "classifier": "hfrl.classifiers:build_classifier",
    "reward_model": "hfrl.rewards:build_reward_model",
    "ddpm": "hfrl.diffusion:build_ddpm",
    "flow": "hfrl.flow:build_flow",
    "stroke_detector": "hfrl.censoring:build_stroke_detector",
    "censor_reward": "hfrl.censoring:build_censor_reward",
    "lora": "hfrl.lora:build_lora",
}
"""Checkpoint kind -> ``"module:function"`` that builds an ``nn.Module`` from the config dict."""


def register_kind(kind: str, builder: str) -> None:
    """Register a checkpoint kind with a ``"module:function"`` builder taking the config dict."""
    BUILDERS[kind] = builder


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` paths for ``NAME``, ``NAME.safetensors``, ``NAME.json`` or a run directory.

    A directory is read as ``DIR/model``.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "model"
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_checkpoint(
    path: str | os.PathLike,
    module: nn.Module,
    kind: str,
    config: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``module``'s weights and its config as a checkpoint.

    Args:
        path: ``NAME`` (suffix optional); parent folders are created.
        module: The module whose ``state_dict`` is saved (moved to the CPU, made contiguous).
        kind: Builder name in :data:`BUILDERS`.
        config: JSON-serialisable config the builder takes.
        metadata: Anything else worth keeping (training seed, metrics, provenance).

    Returns:
        The path of the ``.safetensors`` file.
    """
    weights, config_path = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "metadata": metadata or {},
    }
    atomic_write(weights, lambda tmp: save_file(state, str(tmp)))
    atomic_write(config_path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2, sort_keys=True)))
    return weights


def read_checkpoint_config(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint's JSON document.

    Args:
        path: Any form accepted by :func:`checkpoint_paths`.
        kind: If given, the kind the checkpoint must have.

    Raises:
        CheckpointError: for a missing or malformed file, or another kind.
    """
    _, config_path = checkpoint_paths(path)
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: checkpoint config not found")
    try:
        doc = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not an hfrl checkpoint config (missing format={FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format version {version} is newer than this hfrl supports ({FORMAT_VERSION})"
        )
    if kind is not None and doc.get("kind") != kind:
        raise CheckpointError(f"{config_path}: is a {doc.get('kind')!r} checkpoint, expected {kind!r}")
    if doc.get("kind") not in BUILDERS:
        raise CheckpointError(f"{config_path}: unknown checkpoint kind {doc.get('kind')!r}")
    if not isinstance(doc.get("config"), dict):
        raise CheckpointError(f"{config_path}: 'config' must be an object")
    return doc


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load the tensors of a checkpoint's ``.safetensors`` file.

    Raises:
        CheckpointError: for a missing, corrupt or truncated file.
    """
    weights, _ = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    try:
        return load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({msg})") from None


def _build(kind: str, config: dict[str, Any], where: Path) -> nn.Module:
    module_name, func_name = BUILDERS[kind].split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    try:
        return builder(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where}: config does not describe a valid {kind} ({exc})") from None


def load_into(module: nn.Module, state: dict[str, torch.Tensor], where: str | Path) -> None:
    """Load ``state`` into ``module`` strictly, turning any mismatch into one clear error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        raise CheckpointError(f"{where}: weights do not match the model: {'; '.join(parts)}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"{where}: weights do not match the model: {key} has shape {tuple(value.shape)} in the file "
                f"but {tuple(own[key].shape)} in the model"
            )
    module.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike, kind: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a module from a checkpoint.

    Args:
        path: ``NAME``, ``NAME.safetensors``, ``NAME.json`` or a directory holding ``model.*``.
        kind: The kind expected (``generator``, ``classifier``, ...); any registered kind when ``None``.
        device: Where to put the module.

    Returns:
        ``(module, document)``: the module in eval mode and the checkpoint's JSON document.

    Raises:
        CheckpointError: for any missing, corrupt, truncated or mismatched file.
    """
    doc = read_checkpoint_config(path, kind)
    weights, config_path = checkpoint_paths(path)
    module = _build(doc["kind"], doc["config"], config_path)
    load_into(module, load_state(path), weights)
    return module.to(device).eval(), doc
