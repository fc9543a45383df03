"""reward-grad differentiates the reward model in eval mode, whatever mode the model arrives in."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hfrl.agents import make_config, make_trainer


class DropoutReward(nn.Module):
    """A differentiable reward with heavy dropout; records the mode of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.modes: list[bool] = []

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        return self.drop(self.conv(torch.cat([noisy, output], dim=1))).flatten(1).mean(1)


def _one_update(tiny: dict, tmp_path: Path, global_seed: int) -> tuple[DropoutReward, list[torch.Tensor]]:
    reward = DropoutReward().train()  # arrives in training mode, as a freshly trained model does
    trainer = make_trainer("reward-grad", make_config("reward-grad", **tiny), reward=reward, run_dir=tmp_path)
    torch.manual_seed(global_seed)  # dropout, if it were on, would draw from here
    trainer.update()
    return reward, [p.detach().clone() for p in trainer.policy.generator.parameters()]


def test_reward_is_differentiated_in_eval_mode(tiny: dict, tmp_path: Path) -> None:
    reward, after = _one_update(tiny, tmp_path / "a", global_seed=1)
    assert reward.modes and not any(reward.modes)  # every forward pass with dropout off
    assert reward.training  # and the model's own mode is put back
    _, again = _one_update(tiny, tmp_path / "b", global_seed=2)
    # Same trainer seed, different global RNG: the same gradient step, so the same weights.
    assert all(torch.equal(a, b) for a, b in zip(after, again))
