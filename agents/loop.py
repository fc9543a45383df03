"""What both trainer tracks share: the optimiser step, logging, and the resumable checkpoint file.

The one-step :class:`~hfrl.agents.base.Trainer` (an update per step) and the online
:class:`~hfrl.agents.diffusion.trainer.OnlineDiffusionTrainer` (a feedback round per step) both inherit
:class:`TrainerLoop`: gradient clipping and the optimiser step, the optimiser's state as tensors plus
JSON, and one checkpoint file written atomically (safetensors tensors, the JSON document and its SHA-256
in the metadata) and read back with one-line errors. What each trainer stores in it is its own.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfrl.errors import CheckpointError
from hfrl.runs import CSVLogger, atomic_write

STATE_FILE = "state"
"""Checkpoint stem: ``RUN_DIR/state.safetensors`` (the commit point) and ``state.json`` (a copy to read)."""


class TensorBoard:
    """A TensorBoard writer in ``RUN_DIR/tb``, created on first use (importing TensorBoard takes a moment)."""

    def __init__(self, run_dir: Path) -> None:
        self._dir = run_dir / "tb"
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The ``SummaryWriter``."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self._dir))
        return self._writer

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write ``metrics`` as scalars at ``step`` (non-finite values are skipped)."""
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the writer (if it was opened)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MetricLogger:
    """Writes step metrics to ``train.csv`` and evaluation metrics to ``eval.csv``, both to TensorBoard."""

    def __init__(self, run_dir: Path) -> None:
        self.train_csv = CSVLogger(run_dir / "train.csv")
        self.eval_csv = CSVLogger(run_dir / "eval.csv")
        self._tb = TensorBoard(run_dir)

    @property
    def tb(self) -> Any:
        """The TensorBoard writer, created on first use."""
        return self._tb.writer

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one update's metrics (``eval/*`` go to ``eval.csv``)."""
        train = {k: v for k, v in metrics.items() if not k.startswith("eval/")}
        evals = {k: v for k, v in metrics.items() if k.startswith("eval/")}
        self.train_csv.log({"step": step, **train})
        if evals:
            self.eval_csv.log({"step": step, **evals})
        for key, value in metrics.items():
            self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        self._tb.close()


class TrainerLoop:
    """The loop pieces every trainer shares; a subclass sets ``run_dir`` and ``optimizer``.

    Subclasses decide what goes into their checkpoint and check it; this class writes and reads the
    file and moves the optimiser's state in and out of it.
    """

    run_dir: Path
    optimizer: torch.optim.Optimizer

    def clipped_step(self, max_grad_norm: float | None) -> float:
        """Clip the accumulated gradients to ``max_grad_norm`` (``None``/0: no clipping) and step.

        Returns:
            The gradient norm before clipping; when it is not finite nothing is updated (the caller
            raises its own error).
        """
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm or float("inf")))
        if math.isfinite(norm):
            self.optimizer.step()
        return norm

    def optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The optimiser's state: tensors ``optim.PID.NAME`` and a JSON document of the rest."""
        opt = self.optimizer.state_dict()
        tensors: dict[str, torch.Tensor] = {}
        doc: dict[str, Any] = {"param_groups": opt["param_groups"], "state": {}}
        for pid, state in opt["state"].items():
            doc["state"][str(pid)] = {}
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    doc["state"][str(pid)][key] = value
        return tensors, doc

    def load_optimizer_state(
        self, tensors: dict[str, torch.Tensor], doc: dict[str, Any], device: torch.device
    ) -> None:
        """Restore what :meth:`optimizer_state` returned (moments onto ``device``)."""
        state: dict[int, dict[str, Any]] = {int(pid): dict(values) for pid, values in doc["state"].items()}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value.to(device) if name != "step" else value
        self.optimizer.load_state_dict({"state": state, "param_groups": doc["param_groups"]})

    def check_optimizer_tensors(self, tensors: dict[str, torch.Tensor], where: Path) -> None:
        """Refuse optimiser tensors that name no parameter or have another parameter's shape."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for key, value in tensors.items():
            if not key.startswith("optim."):
                continue
            parts = key.split(".", 2)
            if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) >= len(params):
                raise CheckpointError(f"{where}: tensor {key!r} names no parameter of the optimiser")
            if parts[2] != "step" and value.shape != params[int(parts[1])].shape:
                raise CheckpointError(
                    f"{where}: tensor {key!r} has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(params[int(parts[1])].shape)}"
                )

    def write_state(self, tensors: dict[str, torch.Tensor], doc: dict[str, Any], step: int) -> Path:
        """Write the checkpoint ``RUN_DIR/state.safetensors`` (one atomic rename) and its copy ``state.json``.

        The JSON document and its SHA-256 live in the safetensors metadata, so the file is the single
        commit point: a process killed at any moment leaves the previous checkpoint or the new one, whole.
        ``state.json`` is written after the commit, for people and tools.
        """
        text = json.dumps(doc, default=_json_default, sort_keys=True)
        metadata = {
            "hfrl_state": text,
            "hfrl_state_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "step": str(step),
        }
        weights, meta = self.run_dir / f"{STATE_FILE}.safetensors", self.run_dir / f"{STATE_FILE}.json"
        atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))  # the commit
        atomic_write(meta, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return weights

    def read_state(self, run_dir: Path) -> tuple[Any, dict[str, torch.Tensor], Path]:
        """Read a checkpoint written by :meth:`write_state`: ``(document, tensors, where the document was)``.

        A stale ``state.json`` in this run's own directory is rewritten from the checkpoint.

        Raises:
            CheckpointError: one line naming the file, for a missing, truncated or damaged checkpoint.
        """
        weights, meta = run_dir / f"{STATE_FILE}.safetensors", run_dir / f"{STATE_FILE}.json"
        if not weights.is_file():
            raise CheckpointError(
                f"{run_dir}: no trainer checkpoint ({STATE_FILE}.safetensors) to resume from"
            )
        try:
            with safe_open(str(weights), framework="pt") as fh:
                metadata = fh.metadata() or {}
            tensors = load_file(str(weights))
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a corrupt checkpoint
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{weights}: corrupt or truncated trainer checkpoint ({msg})") from None
        if "hfrl_state" in metadata:
            text, where = metadata["hfrl_state"], weights
            if hashlib.sha256(text.encode()).hexdigest() != metadata.get("hfrl_state_sha256"):
                raise CheckpointError(
                    f"{weights}: the state document does not match its digest (damaged file)"
                )
        else:  # written before the document moved into the checkpoint: state.json is the document
            if not meta.is_file():
                raise CheckpointError(f"{meta}: missing (the trainer checkpoint's document)")
            try:
                text, where = meta.read_text(encoding="utf-8"), meta
            except (OSError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{meta}: cannot read ({exc})") from None
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"{where}: the state document is not valid JSON ({exc})") from None
        self._stale_copy = (meta, text) if where == weights and read_text(meta) != text else None
        return doc, tensors, where

    def refresh_state_copy(self, run_dir: Path) -> None:
        """After a successful check: rewrite this run's ``state.json`` if :meth:`read_state` found it stale."""
        stale = getattr(self, "_stale_copy", None)
        if stale is not None and run_dir.resolve() == self.run_dir.resolve():
            meta, text = stale
            atomic_write(meta, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self._stale_copy = None


def read_text(path: Path) -> str | None:
    """A file's text, or ``None`` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


__all__ = ["STATE_FILE", "MetricLogger", "TensorBoard", "TrainerLoop", "read_text"]
