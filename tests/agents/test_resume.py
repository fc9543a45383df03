"""Resuming a run from its checkpoint gives exactly the uninterrupted run's result on CPU, for every agent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfrl.agents import make_config, make_trainer

RESUMED = (
    "reinforce",
    "ppo",
    "rwl",
    "reward-grad",
    "dpo",
    "sb3-ppo",
    "sb3-a2c",
    "sb3-sac",
    "sb3-td3",
    "n2s",
    "n2s-finetune",
)
EXTRA = {
    "rwl": {"dataset_size": 16, "round_steps": 2},
    # train from the first update, so the checkpoint carries critics, optimisers and the replay buffer
    "sb3-sac": {"learning_starts": 0, "minibatch_size": 8},
    "sb3-td3": {"learning_starts": 0, "minibatch_size": 8},
}


def test_every_built_in_agent_is_tested_for_resume() -> None:
    from hfrl.cli.finetune import AGENT_NAMES

    assert sorted(RESUMED) == sorted(AGENT_NAMES)


@pytest.mark.parametrize("name", RESUMED)
def test_resume_equals_uninterrupted(name: str, tmp_path: Path, tiny, reward_factory) -> None:
    extra = EXTRA.get(name, {})
    full_cfg = make_config(name, **{**tiny, "steps": 4}, **extra)
    torch.manual_seed(0)
    full = make_trainer(name, full_cfg, reward=reward_factory(), run_dir=tmp_path / "full")
    full.train()

    torch.manual_seed(0)
    first = make_trainer(name, full_cfg.replace(steps=2), reward=reward_factory(), run_dir=tmp_path / "split")
    first.train()
    torch.manual_seed(123)  # a different global state: resume must not depend on it
    second = make_trainer(name, full_cfg, reward=reward_factory(), run_dir=tmp_path / "split")
    second.load_state()
    assert second.step == 2
    second.train()
    for a, b in zip(full.policy.state_dict().values(), second.policy.state_dict().values()):
        assert torch.equal(a, b)
