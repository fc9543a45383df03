"""A reward model on every good/bad label so far, retrained each round (``rwl``, ``ddpo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hfrl.checkpoint import load_into
from hfrl.feedback import BAD, GOOD
from hfrl.rewards import (
    LabelledSamples,
    RewardModelConfig,
    RewardTrainingConfig,
    make_reward_model,
    save_reward_model,
    train_reward_model,
)


class LabelPool:
    """Every good/bad label so far, as reward-model training data (samples in ``[0, 1]``)."""

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []
        self.labels: list[float] = []

    def add(self, images: torch.Tensor, words: list[str | None]) -> None:
        """Keep the answered samples of one query (skips left out)."""
        for image, word in zip(images, words):
            if word in (GOOD, BAD):
                self.images.append(image.cpu())
                self.labels.append(1.0 if word == GOOD else 0.0)

    @property
    def trainable(self) -> bool:
        """Whether both classes are present."""
        return 0 < sum(self.labels) < len(self.labels)

    def samples(self) -> LabelledSamples:
        """The labels as :class:`~hfrl.rewards.LabelledSamples` (the output stands in for the input)."""
        x = torch.stack(self.images)
        return LabelledSamples(x, x, torch.tensor(self.labels))


class BinaryRewardMixin:
    """A CNN reward model on all good/bad labels so far, retrained (warm) each round."""

    config: Any
    device: torch.device
    run_dir: Path

    def _init_reward(self) -> None:
        cfg = self.config
        self.pool = LabelPool()
        self.reward_model = make_reward_model(
            RewardModelConfig(arch="cnn", inputs=("output",), width=cfg.reward_width), seed=cfg.seed
        ).to(self.device)
        self.reward_ready = False

    def _train_reward(self, r: int) -> dict[str, float]:
        cfg = self.config
        if not self.pool.trainable or cfg.reward_steps == 0:
            return {}
        rc = RewardTrainingConfig(
            steps=cfg.reward_steps, lr=cfg.reward_lr, seed=cfg.seed + r, device=str(self.device)
        )
        result = train_reward_model(self.reward_model, self.pool.samples(), rc)
        self.reward_model = result.model
        self.reward_ready = True
        return {"losses/reward": result.history[-1]["loss"] if result.history else float("nan")}

    @torch.no_grad()
    def reward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the reward model's probability of good for images in ``[0, 1]``."""
        return self.reward_model.predict_th(images, images).to(self.device)

    def learned_reward(self, images: torch.Tensor) -> torch.Tensor | None:  # noqa: D102
        return self.reward(images) if self.reward_ready else None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The label pool and the reward model, beside what the trainer's other bases keep."""
        tensors, values = super().extra_state()  # type: ignore[misc]
        tensors = {**tensors, **{f"reward.{k}": v for k, v in self.reward_model.state_dict().items()}}
        if self.pool.images:
            tensors["pool.images"] = torch.stack(self.pool.images)
            tensors["pool.labels"] = torch.tensor(self.pool.labels)
        return tensors, {**values, "reward_ready": self.reward_ready}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        super().load_extra_state(tensors, values)  # type: ignore[misc]
        reward = {k[7:]: v for k, v in tensors.items() if k.startswith("reward.")}
        load_into(self.reward_model, reward, "the checkpoint's reward model")
        self.pool = LabelPool()
        if "pool.images" in tensors:
            self.pool.images = list(tensors["pool.images"])
            self.pool.labels = [float(v) for v in tensors["pool.labels"]]
        self.reward_ready = bool(values["reward_ready"])

    def save_extra(self) -> None:  # noqa: D102
        if self.reward_ready:
            save_reward_model(self.run_dir / "reward", self.reward_model, {"labels": len(self.pool.labels)})


__all__ = ["BinaryRewardMixin", "LabelPool"]
