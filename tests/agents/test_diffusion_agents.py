"""Online diffusion trainers act and update in one mode: PPO's ratio is 1 before the first step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfrl.agents.hero import make_online_config, make_online_trainer
from hfrl.diffusion import UNet2D, UNetConfig

TINY = {
    "rounds": 1, "batch_size": 6, "num_inference_steps": 4, "eval_samples": 4, "reward_steps": 2,
    "reward_batch_size": 4, "policy_epochs": 1, "minibatch_size": 6, "device": "cpu",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _dropout_model() -> UNet2D:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return UNet2D(UNetConfig(base_width=8, width_mults=(1, 2), time_dim=16, groups=4, dropout=0.5))


def test_ppo_ratio_is_one_before_the_first_update_with_dropout(tmp_path: Path) -> None:
    trainer = make_online_trainer(
        "ddpo", make_online_config("ddpo", **TINY), run_dir=tmp_path, model=_dropout_model()
    )
    traj = trainer.rollout(trainer.initial_noise(6))
    with torch.no_grad():
        for j in trainer.trained_steps():
            t = int(traj.timesteps[j])
            logp, _, _ = trainer.step_log_prob(trainer.model, traj.states[j], t, traj.actions[j])
            torch.testing.assert_close(logp, traj.log_probs[j])  # same weights, same mode: ratio 1
    metrics = trainer.ppo_update(traj, torch.linspace(-1, 1, 6))  # one minibatch, measured before its step
    assert metrics["charts/approx_kl"] < 1e-6 and metrics["charts/clip_fraction"] == 0.0
    assert metrics["charts/ppo_updates"] == 1.0
    assert not trainer.model.training
