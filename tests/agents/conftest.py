from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyReward(nn.Module):
    """A small differentiable reward over the stacked (noisy, output) pair, for smoke tests."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
        )

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([noisy, output], dim=1)).squeeze(1)


@pytest.fixture()
def tiny_reward() -> TinyReward:
    return TinyReward()


@pytest.fixture()
def reward_factory() -> type[TinyReward]:
    return TinyReward


@pytest.fixture()
def tiny() -> dict:
    """Config fields of a tiny CPU budget."""
    return {
        "steps": 2,
        "batch_size": 8,
        "aux_batch_size": 4,
        "device": "cpu",
        "progress": False,
        "checkpoint_every": 0,
    }
