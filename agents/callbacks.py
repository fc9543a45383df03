"""Callbacks: small objects the trainer calls during training (after Stable-Baselines3's design).

``on_step`` and ``on_round`` return ``False`` to stop training. Callbacks compose with
:class:`CallbackList`; :class:`CheckpointCallback`, :class:`EvalCallback` and :class:`EarlyStopping` are
provided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hfrl.agents.base import Trainer


class Callback:
    """Base class; override the hooks you need. ``trainer`` is set by :meth:`init`."""

    trainer: Trainer

    def init(self, trainer: Trainer) -> None:
        """Attach to a trainer (called once, before training)."""
        self.trainer = trainer

    def on_train_start(self) -> None:
        """Before the first update."""

    def on_step(self, metrics: dict[str, float]) -> bool:
        """After each update, with that update's metrics; return ``False`` to stop."""
        return True

    def on_round(self, metrics: dict[str, float]) -> bool:
        """After each feedback round (the online diffusion trainer, with the round's row); ``False`` stops."""
        return True

    def on_step_end(self) -> None:
        """After each update's metrics (with what :meth:`on_step` added) are logged."""

    def on_train_end(self) -> None:
        """After the last update (also when stopped early)."""


class CallbackList(Callback):
    """Several callbacks called in order; training stops if any returns ``False``."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)

    def init(self, trainer: Trainer) -> None:  # noqa: D102
        super().init(trainer)
        for cb in self.callbacks:
            cb.init(trainer)

    def on_train_start(self) -> None:  # noqa: D102
        for cb in self.callbacks:
            cb.on_train_start()

    def on_step(self, metrics: dict[str, float]) -> bool:  # noqa: D102
        return all([cb.on_step(metrics) for cb in self.callbacks])

    def on_round(self, metrics: dict[str, float]) -> bool:  # noqa: D102
        return all([cb.on_round(metrics) for cb in self.callbacks])

    def on_step_end(self) -> None:  # noqa: D102
        for cb in self.callbacks:
            cb.on_step_end()

    def on_train_end(self) -> None:  # noqa: D102
        for cb in self.callbacks:
            cb.on_train_end()


class CheckpointCallback(Callback):
    """Save a resumable checkpoint every ``every`` steps.

    The checkpoint is written once the step's metrics are logged (:meth:`Callback.on_step_end`), so that the
    logs of a run resumed from it hold every step up to it exactly once.

    Args:
        every: Interval in updates.
    """

    def __init__(self, every: int) -> None:
        self.every = int(every)

    def on_step_end(self) -> None:  # noqa: D102
        if self.every > 0 and self.trainer.step % self.every == 0:
            self.trainer.save_state()


class EvalCallback(Callback):
    """Evaluate on the validation split every ``every`` steps and log ``eval/*`` metrics.

    The evaluator is the independent judge: its numbers are logged, never fed back into training.

    Args:
        every: Interval in updates.
    """

    def __init__(self, every: int) -> None:
        self.every = int(every)
        self.history: list[dict[str, float]] = []

    def on_step(self, metrics: dict[str, float]) -> bool:  # noqa: D102
        if self.every > 0 and self.trainer.step % self.every == 0:
            result = self.trainer.validate()
            self.history.append(result)
            metrics.update(result)
        return True


class EarlyStopping(Callback):
    """Stop when a logged metric has not improved for ``patience`` checks.

    Args:
        metric: Name of a metric in the step metrics (e.g. ``eval/target_good_rate``); steps where it is
            absent are ignored.
        patience: Checks without improvement before stopping.
        mode: ``"max"`` or ``"min"``.
        min_delta: Smallest change that counts as an improvement.
    """

    def __init__(self, metric: str, patience: int = 3, mode: str = "max", min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.metric, self.patience, self.mode, self.min_delta = metric, int(patience), mode, float(min_delta)
        self.best: float | None = None
        self.bad_checks = 0

    def on_step(self, metrics: dict[str, float]) -> bool:  # noqa: D102
        if self.metric not in metrics:
            return True
        value = float(metrics[self.metric])
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_checks = value, 0
            return True
        self.bad_checks += 1
        return self.bad_checks < self.patience
