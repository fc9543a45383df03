from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from hfrl.censoring import CensorReward, CensorRewardConfig, save_censor_reward
from hfrl.diffusion import DDIMScheduler, load_ddpm, load_model
from hfrl.envs.diffusion import BOUND, BatchedDiffusionDenoiseEnv, BenignOracle, DiffusionDenoiseEnv
from hfrl.errors import ConfigError, DataError
from hfrl.flow import FLOW_DIGITS, FlowScheduler

ENV_ID = "hfrl/DiffusionDenoise-v0"
STEPS = 3

# Gymnasium's checker raises no warning on the bare environment.
EXPECTED_GYMNASIUM_WARNINGS: dict[str, str] = {}

# Stable-Baselines3's checker is written for its default CnnPolicy and [-1, 1] actions.
EXPECTED_SB3_WARNINGS = {
    r"observation x_t is an image but its `dtype` is \(float32\)": (
        "x_t is a diffusion sample, a float in model space (about [-1, 1], noisier early on), not a uint8 image"
    ),
    r"upper and lower bounds are not in \[0, 255\]": "same reason: the bounds are +-10 standard deviations",
    r"minimal resolution for an image is 36x36": "MNIST digits are 28x28; only SB3's default CNN needs 36x36",
    r"symmetric and normalized Box action space": (
        "the action is the next sample x_(t-1), which lives in [-10, 10] like the observation, not [-1, 1]"
    ),
}


def constant_reward(images: torch.Tensor) -> torch.Tensor:
    return images.flatten(1).mean(1)


@pytest.fixture()
def env_kwargs() -> dict[str, Any]:
    return {"reward": constant_reward, "num_inference_steps": STEPS}


def _unexpected(record: list[warnings.WarningMessage], expected: dict[str, str]) -> list[str]:
    return [str(w.message) for w in record if not any(re.search(p, str(w.message)) for p in expected)]


def test_registered_without_time_limit_and_with_a_vector_entry_point(env_kwargs: dict[str, Any]) -> None:
    assert gym.spec(ENV_ID).max_episode_steps is None
    env = gym.make(ENV_ID, **env_kwargs)
    assert isinstance(env.unwrapped, DiffusionDenoiseEnv)
    wrapper: Any = env
    while wrapper is not env.unwrapped:
        assert not isinstance(wrapper, TimeLimit)
        wrapper = wrapper.env
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **env_kwargs)
    assert isinstance(venv, BatchedDiffusionDenoiseEnv) and venv.num_envs == 2


def test_gymnasium_env_checker_passes(env_kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym_check_env(gym.make(ENV_ID, **env_kwargs).unwrapped)
    assert _unexpected(record, EXPECTED_GYMNASIUM_WARNINGS) == []


def test_sb3_env_checker_passes_with_only_the_expected_warnings(env_kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(ENV_ID, **env_kwargs))
    assert _unexpected(record, EXPECTED_SB3_WARNINGS) == []
    messages = [str(w.message) for w in record]
    assert all(any(re.search(p, m) for m in messages) for p in EXPECTED_SB3_WARNINGS), "a warning went away"


@pytest.mark.filterwarnings("error")
def test_an_episode_walks_the_scheduler_timesteps_and_pays_at_the_end(env_kwargs: dict[str, Any]) -> None:
    env = gym.make(ENV_ID, **env_kwargs)
    obs, info = env.reset(seed=0)
    assert info == {} and obs in env.observation_space and obs["x_t"].dtype == np.float32
    timesteps = DDIMScheduler(num_inference_steps=STEPS).timesteps.tolist()
    seen = [int(obs["t"])]
    for k in range(1, STEPS + 1):
        action = np.clip(obs["x_t"] * 0.5, -1, 1).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        seen.append(int(obs["t"]))
        assert np.array_equal(obs["x_t"], action) and obs in env.observation_space and truncated is False
        assert terminated is (k == STEPS) and info["step"] == k
        if k < STEPS:
            assert reward == 0.0 and set(info) == {"step"}
    assert seen == [*timesteps, 0]
    assert set(info) == {"step", "score", "reward_components", "malign", "digit", "seven_prob"}
    assert reward == pytest.approx(info["score"]) and info["reward_components"] == {"reward_model": reward}
    assert reward == pytest.approx(float((np.clip(obs["x_t"], -1, 1) + 1).mean() / 2), rel=1e-5)
    assert isinstance(info["malign"], bool) and 0 <= info["digit"] <= 9
    with pytest.raises(ResetNeeded):
        env.step(action)


def test_same_seed_same_chain_and_the_vector_env_matches_single_envs(env_kwargs: dict[str, Any]) -> None:
    a, _ = DiffusionDenoiseEnv(**env_kwargs).reset(seed=5)
    b, _ = DiffusionDenoiseEnv(seed=5, **env_kwargs).reset()
    assert data_equivalence(a, b, exact=True)
    assert not np.array_equal(a["x_t"], DiffusionDenoiseEnv(**env_kwargs).reset(seed=6)[0]["x_t"])
    venv = BatchedDiffusionDenoiseEnv(3, **env_kwargs)
    obs, _ = venv.reset(seed=5)
    singles = [DiffusionDenoiseEnv(**env_kwargs) for _ in range(3)]
    first = [env.reset(seed=5 + i)[0] for i, env in enumerate(singles)]
    for i in range(3):
        assert np.array_equal(obs["x_t"][i], first[i]["x_t"]) and obs["t"][i] == first[i]["t"]
    for k in range(STEPS):
        actions = np.tanh(obs["x_t"]).astype(np.float32)
        results = [env.step(actions[i]) for i, env in enumerate(singles)]
        obs, rewards, terminated, truncated, info = venv.step(actions)
        assert rewards.dtype == np.float64 and terminated.dtype == np.bool_
        assert np.allclose(rewards, [r[1] for r in results], atol=1e-6)
        assert terminated.tolist() == [k == STEPS - 1] * 3
    final = info["final_info"]
    assert np.allclose(final["score"], [r[4]["score"] for r in results], atol=1e-6)
    assert np.array_equal(info["final_obs"][0]["x_t"], results[0][0]["x_t"]) and info["_final_obs"].all()
    # SAME_STEP autoreset: the returned observation starts new chains.
    assert obs["t"].tolist() == [DDIMScheduler(num_inference_steps=STEPS).timesteps[0].item()] * 3


def test_initial_noise_option_starts_the_chains_there(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDiffusionDenoiseEnv(2, **env_kwargs)
    shape = venv.single_observation_space["x_t"].shape
    z = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    obs, _ = venv.reset_torch(seed=1, options={"initial_noise": z})
    assert torch.equal(obs["x_t"].cpu(), z)
    single, _ = DiffusionDenoiseEnv(**env_kwargs).reset(seed=1, options={"initial_noise": z[1].numpy()})
    assert np.array_equal(single["x_t"], z[1].numpy())
    with pytest.raises(DataError, match="initial_noise has shape"):
        venv.reset(options={"initial_noise": z[:1]})
    with pytest.raises(DataError, match="NaN"):
        venv.reset(options={"initial_noise": z * float("nan")})
    with pytest.raises(ConfigError, match="unknown reset option"):
        venv.reset(options={"index": 0})


def test_torch_face_and_a_ddim_policy_with_log_probs() -> None:
    model = load_ddpm()
    venv = BatchedDiffusionDenoiseEnv(4, reward="labeler", num_inference_steps=STEPS, evaluate=False)
    scheduler = DDIMScheduler(model.schedule, num_inference_steps=STEPS, eta=1.0)
    gen = torch.Generator().manual_seed(0)
    obs, _ = venv.reset_torch(seed=0)
    log_probs = []
    for _ in range(STEPS):
        with torch.no_grad():
            out = scheduler.step(model(obs["x_t"], obs["t"]), obs["t"], obs["x_t"], generator=gen)
        log_probs.append(out.log_prob)
        obs, reward, terminated, truncated, info = venv.step_torch(out.prev_sample)
    assert torch.stack(log_probs).shape == (STEPS, 4) and torch.isfinite(torch.stack(log_probs)).all()
    assert terminated.all() and reward.shape == (4,) and ((reward >= 0) & (reward <= 1)).all()
    assert isinstance(info["final_obs"], dict) and info["final_obs"]["x_t"].shape == (4, 1, 28, 28)
    assert "malign" not in info["final_info"]


def test_a_flow_model_drives_the_chain_with_its_sde_and_log_probs() -> None:
    env = gym.make(ENV_ID, model="flow", reward=constant_reward, num_inference_steps=STEPS, evaluate=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    assert _unexpected(record, EXPECTED_GYMNASIUM_WARNINGS) == []
    model = load_model(FLOW_DIGITS)
    scheduler = FlowScheduler(model.schedule, num_inference_steps=STEPS, noise_level=0.7)
    gen = torch.Generator().manual_seed(0)
    obs, _ = env.reset(seed=0)
    seen, log_probs = [int(obs["t"])], []
    terminated = False
    while not terminated:
        assert obs in env.observation_space
        x = torch.from_numpy(obs["x_t"])[None]
        with torch.no_grad():
            out = scheduler.step(model(x, int(obs["t"])), int(obs["t"]), x, generator=gen)
        log_probs.append(float(out.log_prob[0]))
        obs, reward, terminated, _, info = env.step(out.prev_sample[0].numpy())
        seen.append(int(obs["t"]))
    assert seen == [1000, 667, 333, 0] == [*scheduler.timesteps.tolist(), 0]  # a flow starts at t = T
    assert all(np.isfinite(log_probs)) and np.isfinite(reward) and info["step"] == STEPS
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", model="flow", reward=None,
                        num_inference_steps=STEPS, evaluate=False)  # fmt: skip
    assert venv.reset(seed=0)[0]["t"].tolist() == [1000, 1000]
    with pytest.raises(ConfigError, match="not both"):
        DiffusionDenoiseEnv(ddpm="ddpm_digits", model="flow", evaluate=False)


def test_rewards_resolve_from_names_paths_and_modules(tmp_path: Any) -> None:
    model = CensorReward(CensorRewardConfig(width=4))
    save_censor_reward(tmp_path / "r", model)
    for reward in (None, "labeler", tmp_path / "r", model):
        env = DiffusionDenoiseEnv(reward=reward, num_inference_steps=1, evaluate=False)
        obs, _ = env.reset(seed=0)
        _, r, terminated, _, info = env.step(obs["x_t"])
        assert terminated and np.isfinite(r)
        assert (reward is None) == ("score" not in info)
    assert isinstance(DiffusionDenoiseEnv(num_inference_steps=1, evaluate=False).task.reward, BenignOracle)
    with pytest.raises(ConfigError):
        DiffusionDenoiseEnv(reward="nonsense", num_inference_steps=1)


def test_bad_actions_and_arguments_are_rejected(env_kwargs: dict[str, Any]) -> None:
    env = DiffusionDenoiseEnv(**env_kwargs)
    with pytest.raises(ResetNeeded):
        env.step(np.zeros((1, 28, 28), np.float32))
    env.reset(seed=0)
    for bad in (
        np.zeros((28, 28), np.float32),
        np.zeros((1, 28, 28), np.int64),
        np.full((1, 28, 28), np.nan, np.float32),
    ):
        with pytest.raises(DataError):
            env.step(bad)
    obs, *_ = env.step(np.full((1, 28, 28), 50.0, np.float32))
    assert obs["x_t"].max() == BOUND
    with pytest.raises(ConfigError):
        BatchedDiffusionDenoiseEnv(0, **env_kwargs)
    with pytest.raises(ConfigError):
        DiffusionDenoiseEnv(num_inference_steps=0)
    venv = BatchedDiffusionDenoiseEnv(2, **env_kwargs)
    with pytest.raises(ResetNeeded):
        venv.step(np.zeros((2, 1, 28, 28), np.float32))


def test_render_shows_the_current_sample() -> None:
    env = DiffusionDenoiseEnv(
        reward=None, num_inference_steps=2, evaluate=False, render_mode="rgb_array", render_scale=2
    )
    env.reset(seed=0)
    frame = env.render()
    assert frame is not None and frame.shape == (56, 56, 3) and frame.dtype == np.uint8
    venv = BatchedDiffusionDenoiseEnv(
        2, reward=None, num_inference_steps=2, evaluate=False, render_mode="rgb_array"
    )
    venv.reset(seed=0)
    assert len(venv.render()) == 2  # type: ignore[arg-type]
