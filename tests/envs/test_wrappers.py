from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode

from hfrl.envs.denoise import DenoiseEnv
from hfrl.envs.vector import BatchedDenoiseEnv
from hfrl.envs.wrappers import (
    ConsistencyTerm,
    KLTerm,
    RewardModelTerm,
    RewardTermWrapper,
    SourceAuxTerm,
    VectorRewardTermWrapper,
    add_reward_terms,
)
from hfrl.errors import ConfigError
from hfrl.policy import GaussianPolicy

ENV_ID = "hfrl/Denoise-v0"


def _sample(policy: GaussianPolicy, obs: np.ndarray, seed: int) -> np.ndarray:
    x = torch.from_numpy(obs)
    with torch.no_grad():
        return policy.sample(x if x.ndim == 4 else x[None], torch.Generator().manual_seed(seed)).numpy()


def test_components_add_up_to_the_reward(env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy) -> None:
    reference = tiny_policy.frozen_copy()
    wider = GaussianPolicy(tiny_policy.generator, log_std=-1.0)  # the reference's std is exp(-2)
    env = add_reward_terms(
        gym.make(ENV_ID, **env_kwargs),
        KLTerm(reference, coef=0.01, policy=wider),
        ConsistencyTerm(reference, coef=2.0),
        SourceAuxTerm(coef=0.5, policy=tiny_policy),
    )
    obs, _ = env.reset(seed=0)
    _, reward, _, _, info = env.step(_sample(tiny_policy, obs, 0)[0])
    components = info["reward_components"]
    assert set(components) == {"reward_model", "kl", "consistency", "aux"}
    assert reward == pytest.approx(sum(components.values()), abs=1e-9)
    assert components["kl"] < 0 and components["consistency"] < 0 and components["aux"] < 0


def _shifted(policy: GaussianPolicy, shift: float, log_std: float) -> GaussianPolicy:
    moved = GaussianPolicy(copy.deepcopy(policy.generator), log_std=log_std)
    with torch.no_grad():
        moved.generator.decoder[-1].bias += shift  # shift the logits: pixel means move by up to shift / 4
    return moved


@pytest.mark.parametrize(
    ("shift", "log_std"),
    [(0.0, -2.0), (0.0, -3.0), (0.0, 0.0), (0.3, -2.0), (-0.5, -2.5), (0.3, -1.0)],
)
def test_kl_term_is_the_closed_form_and_never_rewards(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy, shift: float, log_std: float
) -> None:
    reference = tiny_policy.frozen_copy()  # log_std -2
    policy = _shifted(tiny_policy, shift, log_std)
    env = VectorRewardTermWrapper(
        BatchedDenoiseEnv(64, **{**env_kwargs, "evaluate": False}), KLTerm(reference, 0.5, policy=policy)
    )
    obs, _ = env.reset(seed=0)
    x = torch.from_numpy(obs)
    with torch.no_grad():
        expected = policy.kl(reference, x).numpy()
        at_the_reference_mean = reference.mode(x).numpy()  # the action the old estimate rewarded most
    for actions in (at_the_reference_mean, _sample(policy, obs, 1), np.zeros_like(obs)):
        env.reset(seed=0)
        term = env.step(actions)[4]["final_info"]["reward_components"]["kl"]
        np.testing.assert_allclose(term, -0.5 * expected, rtol=1e-5, atol=1e-4)
        assert (term <= 0).all()  # a penalty in every case, never a bonus
    if shift == 0.0 and log_std == -2.0:
        np.testing.assert_allclose(expected, 0.0, atol=1e-3)  # the reference itself: KL 0, not -392


def test_kl_term_refuses_without_the_acting_policy(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    env = RewardTermWrapper(DenoiseEnv(**env_kwargs), KLTerm(tiny_policy.frozen_copy()))
    obs, _ = env.reset(seed=0)
    with pytest.raises(ConfigError, match="does not know the acting policy.*set_policy"):
        env.step(obs)
    with pytest.raises(ConfigError, match="GaussianPolicy or a Stable-Baselines3 policy"):
        env.set_policy(tiny_policy.generator)


def test_consistency_is_zero_at_the_initial_generator(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    env = RewardTermWrapper(DenoiseEnv(**env_kwargs), ConsistencyTerm(tiny_policy.generator, coef=3.0))
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        initial = tiny_policy.mode(torch.from_numpy(obs)[None])[0].numpy()
    assert env.step(initial)[4]["reward_components"]["consistency"] == pytest.approx(0.0, abs=1e-7)
    env.reset(seed=0)
    away = np.clip(initial + 0.1, 0, 1)
    mse = float(np.mean((away - initial) ** 2))
    assert env.step(away)[4]["reward_components"]["consistency"] == pytest.approx(-3.0 * mse, rel=1e-4)


def test_source_aux_term_needs_a_policy_and_is_reproducible(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    term = SourceAuxTerm(coef=1.0, batch_size=8)
    env = RewardTermWrapper(DenoiseEnv(**env_kwargs), term)
    assert term.images is not None and len(term.images) == 300  # the source domain's train split: 60% of 500
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="set_policy"):
        env.step(np.zeros((1, 28, 28), np.float32))
    env.set_policy(tiny_policy)

    def aux(seed: int) -> float:
        env.reset(seed=seed)
        return env.step(np.zeros((1, 28, 28), np.float32))[4]["reward_components"]["aux"]

    assert aux(3) == aux(3) != aux(4)
    loss = term.loss()
    loss.backward()  # differentiable, for gradient-based agents
    assert any(p.grad is not None for p in tiny_policy.generator.parameters())


def test_set_policy_reaches_every_term(env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy) -> None:
    kl, aux = KLTerm(tiny_policy.frozen_copy()), SourceAuxTerm()
    env = add_reward_terms(gym.make(ENV_ID, **env_kwargs), kl, ConsistencyTerm(tiny_policy), aux)
    env.set_policy(tiny_policy)
    assert kl.policy is tiny_policy and aux.policy is tiny_policy
    venv = add_reward_terms(BatchedDenoiseEnv(2, **env_kwargs), kl2 := KLTerm(tiny_policy.frozen_copy()))
    venv.set_policy(tiny_policy)
    assert kl2.policy is tiny_policy
    with pytest.raises(ConfigError, match="logit"):
        kl.set_policy(GaussianPolicy(tiny_policy.generator, space="logit"))


def test_vector_wrappers_match_wrapped_single_envs(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    reference = tiny_policy.frozen_copy()
    terms = (KLTerm(reference, 0.01, policy=tiny_policy), ConsistencyTerm(reference, 1.0))
    sync = gym.make_vec(
        ENV_ID,
        num_envs=3,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        wrappers=[lambda e, t=t: RewardTermWrapper(e, t) for t in terms],
        **env_kwargs,
    )
    batched = add_reward_terms(BatchedDenoiseEnv(3, **env_kwargs), *terms)
    obs, _ = sync.reset(seed=5)
    batched.reset(seed=5)
    actions = _sample(tiny_policy, obs, 0)
    assert data_equivalence(sync.step(actions), batched.step(actions))


def test_torch_face_through_wrappers(env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy) -> None:
    def make() -> Any:
        env = BatchedDenoiseEnv(4, **{**env_kwargs, "reward": None})
        return add_reward_terms(env, RewardModelTerm(env_kwargs["reward"]), ConsistencyTerm(tiny_policy, 2.0))

    numpy_env, torch_env = make(), make()
    obs, _ = numpy_env.reset(seed=1)
    obs_t, _ = torch_env.reset_torch(seed=1)
    actions = _sample(tiny_policy, obs, 2)
    _, reward, _, _, info = numpy_env.step(actions)
    _, reward_t, _, _, info_t = torch_env.step_torch(torch.from_numpy(actions))
    np.testing.assert_allclose(reward, reward_t.numpy(), rtol=1e-5, atol=1e-6)
    assert set(info_t["final_info"]["reward_components"]) == {"reward_model", "consistency"}
    assert (
        info["final_info"]["_reward_components"].all()
        and info["final_info"]["reward_components"]["_consistency"].all()
    )


def test_wrapped_env_passes_the_gymnasium_checker(
    env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy
) -> None:
    expected = {
        r"different from the unwrapped version": "the checker prefers bare envs; this test checks the wrappers",
    }
    env = add_reward_terms(
        gym.make(ENV_ID, **env_kwargs),
        KLTerm(tiny_policy.frozen_copy(), policy=tiny_policy),
        SourceAuxTerm(policy=tiny_policy),
    )
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        gym_check_env(env)
    messages = [str(w.message) for w in record]
    assert [m for m in messages if not any(re.search(p, m) for p in expected)] == []


def test_bad_compositions_raise_clear_errors(env_kwargs: dict[str, Any], tiny_policy: GaussianPolicy) -> None:
    env = RewardTermWrapper(DenoiseEnv(**env_kwargs), RewardModelTerm(env_kwargs["reward"]))
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="named 'reward_model'"):
        env.step(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ConfigError, match="wraps"):
        RewardTermWrapper(gym.make("CartPole-v1"), ConsistencyTerm(tiny_policy))
    with pytest.raises(ConfigError, match="coef"):
        ConsistencyTerm(tiny_policy, coef=float("inf"))
    with pytest.raises(ConfigError, match="GaussianPolicy"):
        KLTerm(tiny_policy.generator)  # type: ignore[arg-type]
    wrapped = gym.wrappers.vector.RecordEpisodeStatistics(BatchedDenoiseEnv(2, **env_kwargs))
    outer = VectorRewardTermWrapper(wrapped, ConsistencyTerm(tiny_policy))
    with pytest.raises(AttributeError, match="hfrl wrappers all the way down"):
        outer.reset_torch(seed=0)
