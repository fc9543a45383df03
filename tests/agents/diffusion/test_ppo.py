"""PPO on the reverse chain: the ratio starts at 1, the early stop, the advantages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hfrl.agents.diffusion import normalised
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


@pytest.mark.parametrize("target_kl", [None, 1e-9, 1e9])
def test_target_kl_stops_the_round_update_early(target_kl: float | None, tmp_path: Path) -> None:
    fields = {
        **TINY,
        "batch_size": 6,
        "minibatch_size": 2,
        "policy_epochs": 3,
        "lr": 1e-3,
        "target_kl": target_kl,
    }
    trainer = make_online_trainer("ddpo", make_online_config("ddpo", **fields), run_dir=tmp_path)
    traj = trainer.rollout(trainer.initial_noise(6))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    metrics = trainer.ppo_update(traj, torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0]))
    moved = any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    if target_kl == 1e-9:
        # The first minibatch samples the policy that drew it (KL 0); after one step the next one is past
        # the limit, so its gradient is dropped and the round ends there.
        assert (metrics["charts/ppo_updates"], metrics["charts/ppo_stopped"]) == (1.0, 1.0) and moved
    else:
        assert (metrics["charts/ppo_updates"], metrics["charts/ppo_stopped"]) == (9.0, 0.0) and moved
        assert metrics["charts/approx_kl"] > 0


def test_advantages_are_normalised_with_a_floor_on_the_std() -> None:
    spread = torch.tensor([0.0, 1.0, 2.0, 3.0])
    assert torch.allclose(normalised(spread), (spread - 1.5) / spread.std())
    assert torch.allclose(normalised(spread, min_std=0.5), normalised(spread))  # std 1.29: no effect
    close = torch.tensor([0.90, 0.91, 0.92, 0.93])  # a converged batch: rewards barely differ
    assert float(normalised(close).abs().max()) > 1.0  # plain normalising blows the differences up
    assert torch.allclose(normalised(close, min_std=0.2), (close - 0.915) / 0.2)
    assert torch.equal(normalised(torch.full((3,), 0.7), min_std=0.2), torch.zeros(3))
    assert torch.equal(normalised(torch.tensor([0.3])), torch.zeros(1))
