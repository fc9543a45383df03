from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

from hfrl.envs.denoise import DenoiseEnv
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.errors import ConfigError, DataError

ENV_ID = "hfrl/Denoise-v0"


def _actions(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 1.2, (n, 1, 28, 28)).astype(np.float32)


def test_make_vec_returns_the_batched_env(env_kwargs: dict[str, Any]) -> None:
    venv = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", **env_kwargs)
    assert isinstance(venv, BatchedDenoiseEnv)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.observation_space.shape == venv.action_space.shape == (4, 1, 28, 28)
    assert venv.single_observation_space == DenoiseEnv(**env_kwargs).observation_space
    with pytest.raises(ConfigError, match="num_envs"):
        BatchedDenoiseEnv(0, **env_kwargs)


def test_batched_equals_sync_vector_env_of_single_envs(env_kwargs: dict[str, Any]) -> None:
    """Same seeds: the same observations exactly, rewards and infos up to batched-forward rounding."""
    kwargs = {**env_kwargs, "expose_clean": True}
    sync = gym.make_vec(
        ENV_ID,
        num_envs=3,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        **kwargs,
    )
    batched = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", **kwargs)
    assert data_equivalence(sync.reset(seed=11), batched.reset(seed=11), exact=True)
    for step in range(3):
        expected, got = sync.step(_actions(3, step)), batched.step(_actions(3, step))
        assert data_equivalence(expected[0], got[0], exact=True)  # next observations
        assert data_equivalence(expected, got)  # rewards, flags, final_obs, final_info, reset infos


def test_sub_env_i_is_the_single_env_seeded_seed_plus_i(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(5, **env_kwargs)
    obs, _ = venv.reset(seed=100)
    next_obs, *_ = venv.step(_actions(5, 0))
    for i in (0, 4):
        single = DenoiseEnv(**env_kwargs)
        assert np.array_equal(single.reset(seed=100 + i)[0], obs[i])
        single.step(_actions(5, 0)[i])
        assert np.array_equal(single.reset()[0], next_obs[i])


@pytest.mark.parametrize(
    ("noise", "level"),
    [
        ("gaussian", 0.5),
        ("correlated:length=1", 0.3),
        ("correlated:length=2", 0.3),
        ("poisson-gaussian", 0.2),
    ],
)
def test_keyed_noise_sub_env_i_is_the_single_env_with_seed_plus_i(
    env_kwargs: dict[str, Any], noise: str, level: float
) -> None:
    """Every noise model, vectorised or not, gives sub-env i seeded s what the single env seeded s + i gets."""
    kwargs = {**env_kwargs, "noise": noise, "noise_level": level, "evaluate": False}
    obs, _ = BatchedDenoiseEnv(4, **kwargs).reset(seed=7)
    for i in range(4):
        assert np.array_equal(DenoiseEnv(**kwargs).reset(seed=7 + i)[0], obs[i])
    assert not np.array_equal(obs[0], obs[1])


def test_per_env_seeds_and_options(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(3, **env_kwargs)
    obs, _ = venv.reset(seed=[5, None, 7])
    assert np.array_equal(obs[0], DenoiseEnv(**env_kwargs).reset(seed=5)[0])
    assert np.array_equal(obs[2], DenoiseEnv(**env_kwargs).reset(seed=7)[0])
    _, info = venv.reset(options={"index": [1, 2, 3], "noise_level": 0.0})
    assert info["index"].tolist() == [1, 2, 3] and info["noise_level"].tolist() == [0.0, 0.0, 0.0]
    _, info = venv.reset(options={"index": 9, "noise_level": [0.1, 0.2, 0.3]})
    assert info["index"].tolist() == [9, 9, 9] and np.allclose(info["noise_level"], [0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="one value or 3 values"):
        venv.reset(options={"index": [1, 2]})
    with pytest.raises(ConfigError, match="seeds"):
        venv.reset(seed=[1, 2])


def test_group_option_repeats_each_input_k_times(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(6, **env_kwargs)
    obs, info = venv.reset_torch(seed=3, options={"group": 3})
    assert torch.equal(obs[0], obs[1]) and torch.equal(obs[0], obs[2]) and torch.equal(obs[3], obs[5])
    assert not torch.equal(obs[0], obs[3])
    assert info["index"].tolist()[:3] == [info["index"][0].item()] * 3
    ungrouped, _ = BatchedDenoiseEnv(6, **env_kwargs).reset_torch(seed=3)
    assert torch.equal(obs[0], ungrouped[0]) and torch.equal(
        obs[3], ungrouped[3]
    )  # groups lead with slot 0, 3
    next_obs, *_ = venv.step_torch(obs)
    assert not torch.equal(next_obs[0], next_obs[1])  # the option holds for that reset only
    for bad in (4, 0, 1.5, True):
        with pytest.raises(ConfigError, match="group"):
            venv.reset(options={"group": bad})


def test_autoreset_in_the_same_step_never_ignores_an_action(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(4, **env_kwargs)
    obs, info = venv.reset(seed=0)
    actions = _actions(4, 1)
    next_obs, rewards, terminated, truncated, infos = venv.step(actions)
    assert terminated.all() and not truncated.any() and rewards.dtype == np.float64
    assert infos["final_info"]["index"].tolist() == info["index"].tolist()
    assert infos["index"].tolist() != info["index"].tolist()  # the next episodes already started
    assert all(np.array_equal(infos["final_obs"][i], np.clip(actions[i], 0, 1)) for i in range(4))
    assert not np.array_equal(next_obs, obs)
    again = venv.step(actions)  # every step scores its actions: no reset-only steps
    assert np.isfinite(again[1]).all() and again[2].all()


def test_one_reward_call_per_step(env_kwargs: dict[str, Any]) -> None:
    calls: list[int] = []

    def counting(noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        calls.append(noisy.shape[0])
        return env_kwargs["reward"](noisy, output)

    venv = BatchedDenoiseEnv(64, **{**env_kwargs, "reward": counting})
    venv.reset(seed=0)
    venv.step(_actions(64, 0))
    venv.step(_actions(64, 1))
    assert calls == [64, 64]


def test_torch_face_matches_the_numpy_face(env_kwargs: dict[str, Any]) -> None:
    numpy_env, torch_env = BatchedDenoiseEnv(3, **env_kwargs), BatchedDenoiseEnv(3, **env_kwargs)
    obs_np, _ = numpy_env.reset(seed=2)
    obs_t, info_t = torch_env.reset_torch(seed=2)
    assert isinstance(obs_t, torch.Tensor) and obs_t.device == torch_env.device
    assert np.array_equal(obs_np, obs_t.numpy()) and isinstance(info_t["index"], torch.Tensor)
    actions = _actions(3, 0)
    step_np = numpy_env.step(actions)
    obs_t, reward_t, terminated_t, truncated_t, info_t = torch_env.step_torch(torch.from_numpy(actions))
    assert np.array_equal(step_np[0], obs_t.numpy())
    assert np.array_equal(step_np[1], reward_t.numpy().astype(np.float64))
    assert terminated_t.all() and not truncated_t.any()
    assert torch.equal(info_t["final_obs"], torch.from_numpy(actions).clamp(0, 1))
    assert set(info_t["final_info"]) == {k for k in step_np[4]["final_info"] if not k.startswith("_")}
    obs_t.fill_(0.0)  # returned tensors are copies: changing them leaves the environment alone
    assert torch.equal(torch_env.last_transition.output, torch.from_numpy(actions).clamp(0, 1))


def test_bad_actions_and_calls_raise_clear_errors(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(2, **env_kwargs)
    with pytest.raises(ResetNeeded, match="reset"):
        venv.step(_actions(2, 0))
    venv.reset(seed=0)
    for bad in (_actions(3, 0), _actions(2, 0)[:, 0], _actions(2, 0).astype(np.int32)):
        with pytest.raises(DataError, match="shape|dtype"):
            venv.step(bad)
    nan = _actions(2, 0)
    nan[1, 0, 3, 3] = np.nan
    with pytest.raises(DataError, match="NaN or inf"):
        venv.step_torch(torch.from_numpy(nan))


def test_render_gives_one_frame_per_sub_env(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(3, render_mode="rgb_array", **env_kwargs)
    venv.reset(seed=0)
    venv.step(_actions(3, 0))
    frames = venv.render()
    assert len(frames) == 3 and frames[0].shape == (112, 228, 3) and frames[0].dtype == np.uint8
    venv.close()
    venv.close()  # closing twice is fine


def _counting_starts(venv: BatchedDenoiseEnv) -> list[int]:
    """Count the batches of episodes the environment starts (each one a draw of images and their noise)."""
    calls: list[int] = []
    start = venv.task.start

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return start(*args, **kwargs)

    venv.task.start = counted  # type: ignore[method-assign]
    return calls


def test_step_without_autoreset_ends_the_episodes_and_draws_nothing(env_kwargs: dict[str, Any]) -> None:
    venv = BatchedDenoiseEnv(4, **env_kwargs)
    starts = _counting_starts(venv)
    obs, _ = venv.reset_torch(seed=100)
    actions = torch.from_numpy(_actions(4, 0))
    final, reward, terminated, truncated, info = venv.step_torch(actions, autoreset=False)
    assert len(starts) == 1  # the reset's batch only: none started and thrown away
    assert torch.equal(final, actions.clamp(0, 1)) and torch.equal(info["final_obs"], final)
    assert set(info) == {"final_obs", "final_info"} and terminated.all() and not truncated.any()
    assert reward.shape == (4,) and venv.episodes is None
    with pytest.raises(ResetNeeded):
        venv.step_torch(actions)
    next_obs, _ = venv.reset_torch()
    # The single-env contract still holds: sub-env i is the single env seeded 100 + i, which draws at
    # reset only; and the next batch is the one an autoresetting step would have started.
    for i in (0, 3):
        single = DenoiseEnv(**env_kwargs)
        assert np.array_equal(single.reset(seed=100 + i)[0], obs[i].numpy())
        single.step(_actions(4, 0)[i])
        assert np.array_equal(single.reset()[0], next_obs[i].numpy())
    auto = BatchedDenoiseEnv(4, **env_kwargs)
    auto.reset_torch(seed=100)
    assert torch.equal(auto.step_torch(actions)[0], next_obs)
