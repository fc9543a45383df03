from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from hfrl.envs.sb3 import SB3VecEnvAdapter
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.envs.wrappers import ConsistencyTerm, KLTerm, add_reward_terms
from hfrl.errors import ConfigError
from hfrl.generators import GeneratorConfig, build_generator
from hfrl.policy import GaussianPolicy

ENV_ID = "hfrl/Denoise-v0"


def test_ppo_runs_on_the_batched_env_through_the_adapter(env_kwargs: dict[str, Any]) -> None:
    venv = gym.make_vec(
        ENV_ID, num_envs=16, vectorization_mode="vector_entry_point", **{**env_kwargs, "evaluate": False}
    )
    torch.manual_seed(0)
    reference = GaussianPolicy(build_generator(GeneratorConfig(width=4, bottleneck=8))).frozen_copy()
    venv = add_reward_terms(venv, KLTerm(reference, coef=1e-3), ConsistencyTerm(reference, coef=1.0))
    env = VecMonitor(SB3VecEnvAdapter(venv))
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=16,
        batch_size=64,
        n_epochs=1,
        policy_kwargs={"net_arch": [16]},
        seed=0,
        device="cpu",
    )
    env.env_method("set_policy", model.policy)  # the KL term's acting policy
    model.learn(total_timesteps=512)  # two rollouts of 16 steps x 16 episodes
    assert model.num_timesteps == 512
    assert len(model.ep_info_buffer) == 100  # VecMonitor saw an episode end in every sub-env, every step
    assert all(np.isfinite(info["r"]) and info["l"] == 1 for info in model.ep_info_buffer)


def test_adapter_speaks_sb3s_vec_env_api(env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy) -> None:
    venv = add_reward_terms(
        BatchedDenoiseEnv(3, **env_kwargs), KLTerm(tiny_policy.frozen_copy(), policy=tiny_policy)
    )
    env = SB3VecEnvAdapter(venv)
    env.seed(21)
    obs = env.reset()
    assert obs.shape == (3, 1, 28, 28) and obs.dtype == np.float32
    assert np.array_equal(obs, BatchedDenoiseEnv(3, **env_kwargs).reset(seed=21)[0])
    assert set(env.reset_infos[0]) == {"index", "noise_level"}
    actions = np.clip(obs, 0, 1)
    next_obs, rewards, dones, infos = env.step(actions)
    assert rewards.dtype == np.float32 and dones.all() and len(infos) == 3
    assert np.array_equal(infos[1]["terminal_observation"], actions[1])
    assert infos[0]["TimeLimit.truncated"] is False
    assert set(infos[0]["reward_components"]) == {"reward_model", "kl"}
    assert rewards[2] == pytest.approx(sum(infos[2]["reward_components"].values()), rel=1e-5)
    assert env.get_attr("render_mode") == [None, None, None]
    assert env.env_method("set_policy", tiny_policy, indices=[0]) == [None]
    assert venv.term.policy is tiny_policy
    assert env.env_is_wrapped(gym.Wrapper) == [False] * 3
    env.set_options({"noise_level": 0.0})
    env.reset()
    assert env.reset_infos[0]["noise_level"] == 0.0
    env.close()


def test_adapter_needs_same_step_autoreset(env_kwargs: dict[str, Any]) -> None:
    sync = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", **env_kwargs)  # NEXT_STEP by default
    with pytest.raises(ConfigError, match="SAME_STEP"):
        SB3VecEnvAdapter(sync)


@pytest.mark.parametrize("log_std_init", [-2.0, 0.0])
def test_kl_term_takes_the_sb3_policys_gaussian(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy, log_std_init: float
) -> None:
    reference = tiny_policy.frozen_copy()  # pixel space, log_std -2
    kl = KLTerm(reference, coef=0.5)
    venv = add_reward_terms(BatchedDenoiseEnv(8, **{**env_kwargs, "evaluate": False}), kl)
    model = PPO(
        "MlpPolicy",
        SB3VecEnvAdapter(venv),
        n_steps=1,
        policy_kwargs={"net_arch": [8], "log_std_init": log_std_init},
        seed=0,
        device="cpu",
    )
    venv.set_policy(model.policy)
    with torch.no_grad():
        model.policy.log_std.add_(torch.linspace(-0.5, 0.5, 784))  # per-pixel, as SB3 learns it
    obs, _ = venv.reset(seed=0)
    x = torch.from_numpy(obs)
    with torch.no_grad():  # the closed form, by hand from SB3's own parts: mean = action_net(MLP(x))
        mean = model.policy.action_net(model.policy.mlp_extractor.forward_actor(x.flatten(1)))
        log_std = model.policy.log_std.expand_as(mean)
        ref_mean, ref_log_std = reference.mode(x).flatten(1), reference.log_std
        ratio = (2 * (log_std - ref_log_std)).exp()
        expected = (
            ref_log_std - log_std + (ratio + (mean - ref_mean) ** 2 / (2 * ref_log_std).exp()) / 2 - 0.5
        )
        expected = expected.sum(1).numpy()
    term = venv.step(obs)[4]["final_info"]["reward_components"]["kl"]
    np.testing.assert_allclose(term, -0.5 * expected, rtol=1e-4)
    assert (term < 0).all()  # a penalty (SB3's wide policy is far from the reference), never a bonus


def test_kl_term_refuses_a_non_gaussian_sb3_policy(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    venv = add_reward_terms(BatchedDenoiseEnv(2, **env_kwargs), KLTerm(tiny_policy.frozen_copy()))
    policy_kwargs = {"net_arch": [4], "squash_output": True}  # gSDE: state-dependent, tanh-squashed noise
    model = PPO("MlpPolicy", SB3VecEnvAdapter(venv), n_steps=2, batch_size=4, use_sde=True,
                policy_kwargs=policy_kwargs, device="cpu")  # fmt: skip
    venv.set_policy(model.policy)
    obs, _ = venv.reset(seed=0)
    with pytest.raises(ConfigError, match="diagonal Gaussian"):
        venv.step(obs)
    logit = KLTerm(GaussianPolicy(tiny_policy.generator, space="logit").frozen_copy())
    with pytest.raises(ConfigError, match="pixel-space"):
        logit.set_policy(model.policy)


def test_adapter_without_autoreset_only_ends_the_episodes(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    venv = add_reward_terms(
        BatchedDenoiseEnv(3, **env_kwargs), ConsistencyTerm(tiny_policy), KLTerm(tiny_policy.frozen_copy())
    )
    venv.set_policy(tiny_policy)
    env = SB3VecEnvAdapter(venv, autoreset=False)
    env.seed(4)
    obs = env.reset()
    actions = np.clip(obs + 0.1, 0, 1)
    last_obs, rewards, dones, infos = env.step(actions)
    assert dones.all() and np.array_equal(last_obs, actions) and env.reset_infos == [{}, {}, {}]
    assert set(infos[0]["reward_components"]) == {"reward_model", "consistency", "kl"}
    assert rewards[1] == pytest.approx(sum(infos[1]["reward_components"].values()), rel=1e-5)
    with pytest.raises(ResetNeeded):
        env.step(actions)
    auto = SB3VecEnvAdapter(
        add_reward_terms(BatchedDenoiseEnv(3, **env_kwargs), ConsistencyTerm(tiny_policy))
    )
    auto.seed(4)
    auto.reset()
    assert np.array_equal(auto.step(actions)[0], env.reset())  # the same next episodes, drawn once
