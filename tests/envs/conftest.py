"""Fixtures for the environment tests: cheap deterministic rewards and a small reference policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import hfrl.envs  # noqa: F401  (registers hfrl/Denoise-v0)
from hfrl.data import ImageSet
from hfrl.policy import GaussianPolicy


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run these tests on one torch thread.

    The tensors here are small, and on a 2-core machine shared with other test runs, two OpenMP threads
    stall at every barrier: PPO's 512 steps took 11 s instead of 0.07 s at load average 6.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def contrast_reward(noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """A cheap, deterministic stand-in reward: agreement of the output with the noisy input's bright pixels."""
    return (output * (noisy - 0.5)).flatten(1).mean(1)


class TinyReward(nn.Module):
    """A reward-model-shaped module: one conv over the stacked pair, then a mean."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([noisy, output], dim=1)).tanh().flatten(1).mean(1)


@pytest.fixture()
def reward_fn() -> Any:
    return contrast_reward


@pytest.fixture()
def tiny_reward() -> TinyReward:
    return TinyReward()


@pytest.fixture()
def env_kwargs(mnist: ImageSet) -> dict[str, Any]:
    """Keyword arguments of a fast environment over the embedded digits (evaluator on)."""
    return {"reward": contrast_reward, "dataset": mnist}


@pytest.fixture()
def tiny_policy() -> GaussianPolicy:
    return GaussianPolicy.from_checkpoint()
