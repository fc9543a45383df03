"""One one-step update costs one batch of episodes: one draw of images and noise, one reward call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hfrl.agents import make_config, make_trainer


class CountingReward(torch.nn.Module):
    """A cheap differentiable reward that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls = 0

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return -self.scale * (output - noisy).pow(2).flatten(1).mean(1)


def _trainer(name: str, tiny: dict, tmp_path: Path, **fields: Any) -> tuple[Any, CountingReward, list[int]]:
    reward = CountingReward()
    trainer = make_trainer(name, make_config(name, **tiny, **fields), reward=reward, run_dir=tmp_path)
    starts: list[int] = []
    start = trainer.env.task.start

    def counted(*args: Any, **kwargs: Any) -> Any:
        starts.append(len(args[0]))
        return start(*args, **kwargs)

    trainer.env.task.start = counted
    return trainer, reward, starts


@pytest.mark.parametrize("name", ["reinforce", "ppo"])
def test_one_update_starts_one_batch_and_scores_it_once(name: str, tiny: dict, tmp_path: Path) -> None:
    trainer, reward, starts = _trainer(name, tiny, tmp_path)
    for update in range(1, 4):
        trainer.update()
        assert starts == [tiny["batch_size"]] * update  # no batch drawn by an autoreset and thrown away
        assert reward.calls == update


def test_rwl_collects_its_dataset_from_as_many_batches_as_it_needs(tiny: dict, tmp_path: Path) -> None:
    trainer, reward, starts = _trainer("rwl", tiny, tmp_path, dataset_size=3 * tiny["batch_size"])
    trainer.update()
    assert len(starts) == 3 and reward.calls == 3


def test_same_seed_same_updates(tiny: dict, tmp_path: Path) -> None:
    def rewards(seed: int, run: str) -> list[float]:
        trainer, _, _ = _trainer("reinforce", {**tiny, "seed": seed}, tmp_path / run)
        return [trainer.update()["reward/mean"] for _ in range(3)]

    first = rewards(0, "a")
    assert rewards(0, "b") == first
    assert rewards(1, "c") != first
