"""Public names imported on first use keep working as ordinary attributes."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import hfrl.rewards as rewards
assert "hfrl.rewards.training" not in sys.modules
fn = rewards.train_reward_model                      # a public name: imported now, kept afterwards
assert "hfrl.rewards.training" in sys.modules and vars(rewards)["train_reward_model"] is fn
assert rewards.models.__name__ == "hfrl.rewards.models"  # a submodule by its name
assert "train_reward_model" in dir(rewards)
import hfrl.agents as agents
agents.PPOTrainer                                    # a name of hfrl.agents registers the built-ins first
from hfrl.agents.registry import AGENTS
assert "ppo" in AGENTS and "reward-grad" in AGENTS
try:
    rewards.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise SystemExit("no AttributeError")
print("ok")
"""


def test_names_are_imported_on_first_use_and_kept() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_an_unknown_name_is_an_attribute_error() -> None:
    import hfrl.experiments

    with pytest.raises(AttributeError, match="hfrl.experiments.*nothing_here"):
        hfrl.experiments.nothing_here  # noqa: B018
