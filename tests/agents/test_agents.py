"""Every agent: a tiny budget on CPU, the shared objective, logging, files, and failure modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hfrl.agents import AGENTS, NonFiniteLossError, make_config, make_trainer
from hfrl.errors import ConfigError

ALL_AGENTS = ["reinforce", "ppo", "rwl", "reward-grad", "dpo", "sb3-ppo", "sb3-a2c", "sb3-sac", "sb3-td3"]


def test_every_named_agent_is_registered() -> None:
    assert set(ALL_AGENTS) <= set(AGENTS)


@pytest.mark.parametrize("name", ALL_AGENTS)
def test_tiny_run_writes_a_complete_run_directory(name: str, tiny_reward, tmp_path: Path, tiny) -> None:
    extra = {"dataset_size": 16, "round_steps": 1} if name == "rwl" else {}
    config = make_config(name, **tiny, **extra)
    reward_params = [p.clone() for p in tiny_reward.parameters()]
    trainer = make_trainer(name, config, reward=tiny_reward, run_dir=tmp_path)
    result = trainer.train()
    assert result.steps == 2 and len(result.history) == 2
    for key in ("losses/kl", "losses/aux", "losses/consistency"):
        assert key in result.history[-1]  # logged even when a weight is 0
    for file in (
        "config.json",
        "train.csv",
        "evaluation.json",
        "generator.safetensors",
        "generator.json",
        "state.safetensors",
        "state.json",
        "grid_before.png",
        "grid_after.png",
    ):
        assert (tmp_path / file).exists(), file
    assert any((tmp_path / "tb").iterdir())
    final = json.loads((tmp_path / "evaluation.json").read_text())
    for key in (
        "target_good_rate_before",
        "target_good_rate_after",
        "source_psnr_change",
        "target_psnr_gain",
    ):
        assert key in final
    # the evaluation behind evaluation.json comes back with the result (reports need not evaluate again)
    assert result.evaluation is not None
    assert result.evaluation.target.summary()["good_rate"] == pytest.approx(final["target_good_rate_after"])
    # the reward model never changes
    for before, after in zip(reward_params, tiny_reward.parameters()):
        assert torch.equal(before, after)
    if name == "dpo":
        assert final["labels_used"] == 16  # one label per pair


def test_generator_of_a_run_loads_in_evaluate(tiny_reward, tmp_path: Path, tiny) -> None:
    from hfrl.cli import main

    make_trainer(
        "reward-grad", make_config("reward-grad", **tiny), reward=tiny_reward, run_dir=tmp_path / "r"
    ).train()
    assert (
        main(
            ["evaluate", "--generator", str(tmp_path / "r"), "--out", str(tmp_path / "e"), "--device", "cpu"]
        )
        == 0
    )


def test_weights_of_zero_remove_their_gradient(tiny_reward, tiny) -> None:
    config = make_config("reward-grad", **tiny, kl=0.0, aux=0.0, consistency=0.0)
    trainer = make_trainer("reward-grad", config, reward=tiny_reward)
    noisy = trainer.observe()
    # move the policy away from the reference so every term is non-zero
    with torch.no_grad():
        for p in trainer.policy.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    reg, metrics = trainer.regularizers(noisy)
    assert metrics["losses/kl"] > 0 and metrics["losses/aux"] > 0 and metrics["losses/consistency"] > 0
    assert not reg.requires_grad or float(reg) == 0.0
    config = make_config("reward-grad", **tiny, kl=1.0, aux=0.0, consistency=0.0)
    trainer = make_trainer("reward-grad", config, reward=tiny_reward)
    with torch.no_grad():
        for p in trainer.policy.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    reg, _ = trainer.regularizers(trainer.observe())
    assert reg.requires_grad


def test_reward_grad_needs_a_differentiable_reward(tiny) -> None:
    with pytest.raises(ConfigError, match="differentiable reward model"):
        make_trainer("reward-grad", make_config("reward-grad", **tiny), reward="labeler")


def test_sampling_agents_run_on_the_oracle_reward(tmp_path: Path, tiny) -> None:
    result = make_trainer(
        "reinforce", make_config("reinforce", **tiny, reward="labeler"), run_dir=tmp_path
    ).train()
    assert 0.0 < result.history[-1]["reward/mean"] < 1.0


def test_group_advantages_compare_actions_for_the_same_input() -> None:
    from hfrl.agents.reinforce import advantages
    from hfrl.agents.rwl import sample_weights

    reward = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 13.0])
    adv = advantages(reward, normalize=False, group_size=3)
    assert torch.allclose(adv, torch.tensor([-1.5, 0.0, 1.5, -1.5, -1.5, 3.0]))  # leave-one-out baselines
    assert torch.allclose(advantages(reward, normalize=False), reward - reward.mean())
    assert advantages(reward, group_size=3).std().item() == pytest.approx(1.0, abs=1e-5)
    w = sample_weights(reward, "exp", 0.5, 1.0, group_size=3)
    assert torch.allclose(w.view(2, 3).mean(1), torch.ones(2))  # normalised within each input's group
    assert w[2] > w[1] > w[0] and w[3] == w[4] < w[5]


def test_group_size_must_divide_the_batch(tiny, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="group_size"):
        make_config("reinforce", **{**tiny, "group_size": 3})
    trainer = make_trainer(
        "reinforce", make_config("reinforce", **{**tiny, "group_size": 4}), reward="labeler", run_dir=tmp_path
    )
    noisy = trainer.observe()
    assert torch.equal(noisy[0], noisy[3]) and not torch.equal(noisy[0], noisy[4])


def test_bad_config_is_one_clear_error(tiny) -> None:
    with pytest.raises(ConfigError, match="kl must be"):
        make_config("ppo", kl=-1)
    with pytest.raises(ConfigError, match="unknown PPOConfig field"):
        make_config("ppo", beta=1)
    with pytest.raises(ConfigError, match="unknown agent"):
        make_config("sac")
    with pytest.raises(ConfigError, match="needs a reward"):
        make_trainer("ppo", make_config("ppo", **tiny))


class ExplodingReward(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output.sum((1, 2, 3)) * float("nan")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(
    tiny_reward, tmp_path: Path, tiny
) -> None:
    config = make_config("reward-grad", **{**tiny, "steps": 3, "checkpoint_every": 1})
    trainer = make_trainer("reward-grad", config, reward=tiny_reward, run_dir=tmp_path)
    trainer.train()
    good = (tmp_path / "state.safetensors").read_bytes()
    config = config.replace(steps=5)
    bad = make_trainer("reward-grad", config, reward=ExplodingReward(), run_dir=tmp_path)
    bad.load_state()
    with pytest.raises(NonFiniteLossError, match="step 4: reward-gradient loss is nan"):
        bad.train()
    assert (tmp_path / "state.safetensors").read_bytes() == good


def test_builtin_configs_name_the_config_of_every_builtin_agent() -> None:
    # hfrl finetune --help reads BUILTIN_CONFIGS so as not to import the trainers: it must not drift
    from hfrl.agents.config import BUILTIN_CONFIGS
    from hfrl.agents.registry import register_builtin_agents

    register_builtin_agents()
    builtin = {name: AGENTS[name].config_class for name in BUILTIN_CONFIGS}
    assert builtin == BUILTIN_CONFIGS
    assert list(AGENTS)[: len(BUILTIN_CONFIGS)] == list(BUILTIN_CONFIGS)
