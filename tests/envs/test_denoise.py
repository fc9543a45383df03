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

from hfrl.checkpoint import BUILDERS, save_checkpoint
from hfrl.envs.denoise import DenoiseEnv, keyed_normal
from hfrl.envs.rewards import LabelerReward, resolve_reward
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.errors import ConfigError, DataError
from hfrl.noise import SaltPepperNoise

ENV_ID = "hfrl/Denoise-v0"

# Gymnasium's checker raises no warning on the bare environment.
EXPECTED_GYMNASIUM_WARNINGS: dict[str, str] = {}

# Stable-Baselines3's checker is written for its default CnnPolicy and [-1, 1] actions.
EXPECTED_SB3_WARNINGS = {
    r"observation\s+is an image but its `dtype` is \(float32\)": (
        "hfrl images are float32 in [0, 1] everywhere (DESIGN.md); SB3's CnnPolicy wants uint8, so use "
        "MlpPolicy or a features extractor with normalize_images=False"
    ),
    r"upper and lower bounds are not in \[0, 255\]": "same reason: float images in [0, 1], not uint8",
    r"minimal resolution for an image is 36x36": "MNIST digits are 28x28; only SB3's default CNN needs 36x36",
    r"symmetric and normalized Box action space": (
        "the action is the output image, in [0, 1] like every image; SB3 clips its Gaussian samples to it"
    ),
}


def _messages(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record]


def _unexpected(messages: list[str], expected: dict[str, str]) -> list[str]:
    return [m for m in messages if not any(re.search(p, m) for p in expected)]


def test_registered_without_time_limit_and_with_a_vector_entry_point(env_kwargs: dict[str, Any]) -> None:
    spec = gym.spec(ENV_ID)
    assert spec.max_episode_steps is None
    env = gym.make(ENV_ID, **env_kwargs)
    assert isinstance(env.unwrapped, DenoiseEnv)
    wrapper: Any = env
    while wrapper is not env.unwrapped:
        assert not isinstance(wrapper, TimeLimit)
        wrapper = wrapper.env
    venv = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", **env_kwargs)
    assert isinstance(venv, BatchedDenoiseEnv) and venv.num_envs == 3


def test_gymnasium_env_checker_passes(env_kwargs: dict[str, Any]) -> None:
    env = gym.make(ENV_ID, **env_kwargs)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    assert _unexpected(_messages(record), EXPECTED_GYMNASIUM_WARNINGS) == []


def test_sb3_env_checker_passes_with_only_the_expected_warnings(env_kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sb3_check_env(gym.make(ENV_ID, **env_kwargs))
    messages = _messages(record)
    assert _unexpected(messages, EXPECTED_SB3_WARNINGS) == []
    assert all(any(re.search(p, m) for m in messages) for p in EXPECTED_SB3_WARNINGS), "a warning went away"


@pytest.mark.filterwarnings("error")
def test_one_step_episodes_in_the_declared_spaces(env_kwargs: dict[str, Any]) -> None:
    env = gym.make(ENV_ID, **env_kwargs)
    obs, info = env.reset(seed=0)
    assert obs.shape == (1, 28, 28) and obs.dtype == np.float32 and obs in env.observation_space
    assert set(info) == {"index", "noise_level"}
    obs2, reward, terminated, truncated, info = env.step(obs)
    assert terminated is True and truncated is False and isinstance(reward, float)
    assert np.array_equal(obs2, obs) and obs2 in env.observation_space
    assert set(info) == {
        "score",
        "reward_components",
        "good",
        "psnr",
        "ssim",
        "class",
        "index",
        "noise_level",
    }
    assert info["reward_components"] == {"reward_model": reward} and info["score"] == reward
    assert 1 <= info["class"] <= 9 and isinstance(info["good"], bool)


def test_same_seed_gives_the_same_observations_rewards_and_infos(env_kwargs: dict[str, Any]) -> None:
    def run(seed: int) -> list[Any]:
        env = DenoiseEnv(**env_kwargs)
        out: list[Any] = [env.reset(seed=seed)]
        rng = np.random.default_rng(0)
        for _ in range(3):
            out.append(env.step(rng.random((1, 28, 28), dtype=np.float32)))
            out.append(env.reset())
        return out

    assert data_equivalence(run(7), run(7), exact=True)
    assert not data_equivalence(run(7)[0][0], run(8)[0][0])
    seeded = DenoiseEnv(seed=7, **env_kwargs)
    assert np.array_equal(seeded.reset()[0], DenoiseEnv(**env_kwargs).reset(seed=7)[0])


def test_options_fix_the_image_and_the_noise_level(env_kwargs: dict[str, Any]) -> None:
    env = DenoiseEnv(expose_clean=True, **env_kwargs)
    obs, info = env.reset(seed=0, options={"index": 5, "noise_level": 0.0})
    assert info["index"] == 5 and info["noise_level"] == 0.0
    assert np.array_equal(obs, info["clean"])  # no noise: the clean image itself
    assert np.array_equal(info["clean"], env.task.images[5].numpy())
    _, info = env.reset(options={"noise_level": 0.25})
    assert info["noise_level"] == 0.25
    for bad in (
        {"index": len(env.task)},
        {"index": -1},
        {"noise_level": -0.1},
        {"sigma": 1.0},
        {"index": 1.5},
    ):
        with pytest.raises(ConfigError):
            env.reset(options=bad)


def test_the_clean_image_is_only_reported_when_asked_for(env_kwargs: dict[str, Any]) -> None:
    hidden = DenoiseEnv(**env_kwargs)
    _, info = hidden.reset(seed=1)
    _, _, _, _, step_info = hidden.step(np.zeros((1, 28, 28), np.float32))
    assert "clean" not in info and "clean" not in step_info
    shown = DenoiseEnv(expose_clean=True, **env_kwargs)
    _, info = shown.reset(seed=1)
    _, _, _, _, step_info = shown.step(info["clean"])
    assert np.array_equal(step_info["clean"], info["clean"]) and step_info["psnr"] == float("inf")


def test_bad_actions_and_calls_raise_clear_errors(env_kwargs: dict[str, Any]) -> None:
    env = DenoiseEnv(**env_kwargs)
    with pytest.raises(ResetNeeded, match="call reset"):
        env.step(np.zeros((1, 28, 28), np.float32))
    env.reset(seed=0)
    good = np.full((1, 28, 28), 0.5, np.float32)
    cases = {
        "shape": np.zeros((28, 28), np.float32),
        "batch": np.zeros((2, 1, 28, 28), np.float32),
        "dtype": np.zeros((1, 28, 28), np.int64),
        "dtype bool": np.zeros((1, 28, 28), bool),
        "NaN": np.where(np.eye(28)[None] > 0, np.nan, good).astype(np.float32),
        "inf": np.where(np.eye(28)[None] > 0, np.inf, good).astype(np.float32),
        "beyond float32": np.full((1, 28, 28), 1e300),
    }
    for name, action in cases.items():
        with pytest.raises(DataError, match="shape|dtype|NaN or inf"):
            env.step(action)
        assert name  # the episode is still running after a rejected action
    env.step(good)
    with pytest.raises(ResetNeeded):
        env.step(good)


def test_out_of_range_actions_are_clipped(env_kwargs: dict[str, Any]) -> None:
    env = DenoiseEnv(**env_kwargs)
    action = np.random.default_rng(0).uniform(-1, 2, (1, 28, 28))  # float64 is accepted too
    env.reset(seed=3)
    obs, reward, *_ = env.step(action)
    env.reset(seed=3)
    _, clipped_reward, *_ = env.step(np.clip(action, 0, 1).astype(np.float32))
    assert obs.min() >= 0 and obs.max() <= 1 and reward == clipped_reward


def test_render_shows_noisy_output_and_clean_panels(env_kwargs: dict[str, Any]) -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array", expose_clean=True, **env_kwargs)
    env.reset(seed=0)
    before = env.render()
    env.step(np.ones((1, 28, 28), np.float32))
    after = env.render()
    assert before.shape == after.shape == (28 * 4, (3 * 28 + 2) * 4, 3) and after.dtype == np.uint8
    assert (after[:, 29 * 4 : 57 * 4] == 255).all() and (before[:, 29 * 4 : 57 * 4] == 32).all()
    assert DenoiseEnv(**env_kwargs).render() is None
    with pytest.raises(ConfigError, match="render_mode"):
        DenoiseEnv(render_mode="human", **env_kwargs)


def test_user_tensors_of_any_size_form_the_domain(reward_fn: Any) -> None:
    images = torch.rand(40, 16, 20, generator=torch.Generator().manual_seed(0))
    env = gym.make(ENV_ID, reward=reward_fn, dataset=images, split="all", evaluate=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (1, 16, 20) and env.observation_space.shape == (1, 16, 20)
    _, _, _, _, info = env.step(obs)
    assert info["class"] == -1 and "good" not in info
    with pytest.raises(ConfigError, match="evaluate=False"):
        DenoiseEnv(reward=reward_fn, dataset=images)
    with pytest.raises(DataError, match="dataset must be"):
        DenoiseEnv(reward=reward_fn, dataset=[1, 2, 3])


def test_domain_and_split_select_the_images(env_kwargs: dict[str, Any], mnist: Any) -> None:
    source = DenoiseEnv(domain="source", split="test", **env_kwargs)
    assert set(source.task.labels.tolist()) == {0}
    target = DenoiseEnv(target_classes="3-4", **env_kwargs)
    assert set(target.task.labels.tolist()) == {3, 4} and len(target.task) == 600  # 60% of 2 x 500
    with pytest.raises(ConfigError, match="unknown split"):
        DenoiseEnv(split="dev", **env_kwargs)
    with pytest.raises(DataError, match="overlap"):
        DenoiseEnv(source_classes=(0, 1), **env_kwargs)


class _TorchvisionLike:
    def __init__(self, mnist: Any) -> None:
        self.data = (mnist.images[::50, 0] * 255).to(torch.uint8)  # (100, 28, 28) uint8, all classes
        self.targets = mnist.labels[::50]


def test_a_torchvision_style_dataset_is_accepted(mnist: Any, reward_fn: Any) -> None:
    env = DenoiseEnv(reward=reward_fn, dataset=_TorchvisionLike(mnist), split="all")
    assert len(env.task) == int((mnist.labels[::50] > 0).sum()) == 90


def test_keyed_noise_is_splitmix64_and_independent_of_the_batch() -> None:
    def splitmix(z: int) -> int:
        z &= (1 << 64) - 1
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
        return z ^ (z >> 31)

    from hfrl.envs.denoise import splitmix64

    keys = torch.tensor([0, 1, -5, 2**62 + 12345], dtype=torch.int64)
    hashed = splitmix64(keys).tolist()
    assert [h & ((1 << 64) - 1) for h in hashed] == [splitmix(k) for k in keys.tolist()]
    big = torch.randint(-(2**62), 2**62, (64,), generator=torch.Generator().manual_seed(0))
    batch = keyed_normal(big, (1, 28, 28))
    assert torch.equal(batch[10], keyed_normal(big[10:11], (1, 28, 28))[0])
    assert abs(float(batch.mean())) < 0.01 and float(batch.std()) == pytest.approx(1.0, abs=0.01)


def test_other_noise_models_are_reproducible(env_kwargs: dict[str, Any]) -> None:
    a = DenoiseEnv(noise=SaltPepperNoise(0.2), **env_kwargs).reset(seed=4)[0]
    b = DenoiseEnv(noise="salt-pepper", noise_level=0.2, **env_kwargs).reset(seed=4)[0]
    assert np.array_equal(a, b) and set(np.unique(a)) - {0.0, 1.0} != set(np.unique(a))


def test_rewards_are_checked(env_kwargs: dict[str, Any]) -> None:
    kwargs = {k: v for k, v in env_kwargs.items() if k != "reward"}
    for reward, message in (
        (lambda noisy, out: out.mean((1, 2)), "shape"),
        (lambda noisy, out: out.mean((1, 2, 3)) / 0.0 * 0.0, "NaN"),
    ):
        env = DenoiseEnv(reward=reward, **kwargs)
        env.reset(seed=0)
        with pytest.raises(DataError, match=message):
            env.step(np.zeros((1, 28, 28), np.float32))


def test_reward_kinds(
    env_kwargs: dict[str, Any], tiny_reward: torch.nn.Module, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = {k: v for k, v in env_kwargs.items() if k != "reward"}
    labeler = DenoiseEnv(reward="labeler", expose_clean=True, **kwargs)
    assert isinstance(labeler.task.reward, LabelerReward)
    _, info = labeler.reset(seed=0)
    assert 0.5 < labeler.step(info["clean"])[1] <= 1.0  # the oracle likes the clean image
    silent = DenoiseEnv(reward=None, **kwargs)
    silent.reset(seed=0)
    _, reward, _, _, info = silent.step(np.zeros((1, 28, 28), np.float32))
    assert reward == 0.0 and "score" not in info and info["reward_components"] == {}
    module = DenoiseEnv(reward=tiny_reward, **kwargs)
    module.reset(seed=0)
    assert isinstance(module.step(np.zeros((1, 28, 28), np.float32))[1], float)
    with pytest.raises(ConfigError, match="unknown reward"):
        DenoiseEnv(reward="no-such-reward", **kwargs)
    with pytest.raises(ConfigError, match="reward must be"):
        resolve_reward(3)  # type: ignore[arg-type]
    # The hook for learned reward models: a 'reward_model' checkpoint resolves through its registered builder.
    save_checkpoint(tmp_path / "rm", torch.nn.Identity(), kind="reward_model", config={})
    monkeypatch.setitem(BUILDERS, "reward_model", "torch.nn:Identity")
    assert isinstance(resolve_reward(str(tmp_path / "rm")), torch.nn.Identity)
    monkeypatch.setitem(BUILDERS, "reward_model", "hfrl.no_such_module:build")
    with pytest.raises(ConfigError, match="cannot build a reward model"):
        resolve_reward(tmp_path / "rm")


class _DropoutReward(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.9)

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.drop(output).flatten(1).mean(1)


def test_a_module_reward_scores_in_eval_mode_and_keeps_its_mode(env_kwargs: dict[str, Any]) -> None:
    reward = _DropoutReward().train()
    env = DenoiseEnv(**{**env_kwargs, "reward": reward})
    action = np.full((1, 28, 28), 0.5, np.float32)
    rewards = [(env.reset(seed=0), env.step(action)[1])[1] for _ in range(3)]
    assert rewards == [0.5] * 3 and reward.training


def test_colour_and_small_images_give_their_spaces_and_the_labeler_reward_scores_them() -> None:
    from tests.conftest import shapes_dataset

    for channels, h, w in [(3, 32, 32), (1, 8, 8), (3, 12, 20)]:
        images, labels = shapes_dataset(16, channels, h, w)
        env = gym.make(
            ENV_ID, reward="labeler", dataset=(images, labels), split="all", evaluate=False, expose_clean=True
        )
        obs, info = env.reset(seed=0)
        assert obs.shape == (channels, h, w) and env.action_space.shape == (channels, h, w)
        _, perfect, *_ = env.step(np.asarray(info["clean"]))
        env.reset(seed=0)
        _, blank, *_ = env.step(np.zeros_like(obs))
        assert perfect > 0.99 and blank < perfect  # the classifier-free labeler: SSIM to the clean image
        vector = BatchedDenoiseEnv(
            4, reward="labeler", dataset=(images, labels), domain="all", split="all", evaluate=False
        )
        assert vector.single_observation_space.shape == (channels, h, w)
    with pytest.raises(
        DataError, match="labeler reward's classifier judges 1x28x28 images but the data are 3x8x8"
    ):
        DenoiseEnv(reward=LabelerReward(), dataset=torch.rand(8, 3, 8, 8), evaluate=False)
