"""The Stable-Baselines3 agents: the KL with SB3's own Gaussian, and SB3's optimiser as the trainer's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hfrl.agents import make_config, make_trainer


@pytest.mark.parametrize("name", ["sb3-ppo", "sb3-a2c"])
def test_kl_uses_sb3s_learnt_log_std(name: str, tiny: dict, tiny_reward, tmp_path: Path) -> None:
    trainer = make_trainer(name, make_config(name, **tiny), reward=tiny_reward, run_dir=tmp_path)
    sb3 = trainer.model.policy
    assert trainer.kl_term.policy is sb3
    noisy = trainer.observe()
    with torch.no_grad():
        assert float(trainer.kl_term.kl(noisy).abs().max()) < 1e-3  # SB3 starts at the reference: KL 0
        sb3.log_std.add_(torch.linspace(0.2, 1.0, sb3.log_std.numel()))  # as if SB3 had learnt it
    metrics = trainer.update()
    obs = torch.as_tensor(trainer.model.rollout_buffer.observations).reshape(-1, 1, 28, 28)
    with torch.no_grad():  # the closed form by hand: mean = generator output, per-pixel std = SB3's
        mean, ref = trainer.policy.mode(obs).flatten(1), trainer.reference.mode(obs).flatten(1)
        log_std, ref_log_std = sb3.log_std, trainer.reference.log_std
        var, ref_var = (2 * log_std).exp(), (2 * ref_log_std).exp()
        expected = (ref_log_std - log_std + (var + (mean - ref) ** 2) / (2 * ref_var) - 0.5).sum(1).mean()
        fixed_std = trainer.policy.kl(trainer.reference, obs).mean()  # what was logged before
    assert metrics["losses/kl"] == pytest.approx(float(expected), rel=1e-4)
    assert metrics["losses/kl"] > 10 * float(fixed_std) + 100


def test_the_trainers_optimiser_is_the_one_sb3_steps(tiny: dict, tiny_reward, tmp_path: Path) -> None:
    trainer = make_trainer("sb3-ppo", make_config("sb3-ppo", **tiny), reward=tiny_reward, run_dir=tmp_path)
    assert trainer.optimizer is trainer.model.policy.optimizer
    trainer.update()
    assert trainer.optimizer.state  # stepped: Adam moments exist, and checkpoints save them
    trainer.save_state()
    resumed = make_trainer("sb3-ppo", make_config("sb3-ppo", **tiny), reward=tiny_reward, run_dir=tmp_path)
    resumed.load_state(tmp_path)
    saved_params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    loaded_params = [p for g in resumed.optimizer.param_groups for p in g["params"]]
    for saved, loaded in zip(saved_params, loaded_params, strict=True):  # state is keyed by parameter
        assert torch.equal(
            trainer.optimizer.state[saved]["exp_avg"], resumed.optimizer.state[loaded]["exp_avg"]
        )


def test_one_update_starts_one_batch_of_episodes(tiny: dict, tiny_reward, tmp_path: Path) -> None:
    trainer = make_trainer("sb3-ppo", make_config("sb3-ppo", **tiny), reward=tiny_reward, run_dir=tmp_path)
    starts: list[int] = []
    start = trainer.env.task.start

    def counted(*args: Any, **kwargs: Any) -> Any:
        starts.append(1)
        return start(*args, **kwargs)

    trainer.env.task.start = counted
    for update in range(1, 3):
        trainer.update()
        assert len(starts) == update  # SB3's reset only: no autoreset batch thrown away
