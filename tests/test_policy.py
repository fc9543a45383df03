from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch.distributions import Independent, Normal, SigmoidTransform, TransformedDistribution, kl_divergence

from hfrl.errors import ConfigError
from hfrl.generators import GeneratorConfig, build_generator
from hfrl.policy import GaussianPolicy

SPACES = ("pixel", "logit")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors: one torch thread is faster, and steady on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_generator(GeneratorConfig(width=4, bottleneck=8)).eval()


@pytest.fixture()
def noisy() -> torch.Tensor:
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("space", SPACES)
def test_log_prob_matches_torch_distributions(space: str, noisy: torch.Tensor) -> None:
    policy = GaussianPolicy(_generator(), space=space, log_std=-1.5)
    with torch.no_grad():
        action = policy.sample(noisy, generator=torch.Generator().manual_seed(2))
        loc = policy.loc(noisy)
        base = Normal(loc, torch.full_like(loc, math.exp(-1.5)))
        if space == "logit":
            action = action.clamp(1e-3, 1 - 1e-3)  # away from the clamp, where both must agree exactly
            reference = Independent(TransformedDistribution(base, [SigmoidTransform()]), 3)
        else:
            reference = Independent(base, 3)
        torch.testing.assert_close(
            policy.log_prob(noisy, action), reference.log_prob(action), rtol=1e-5, atol=1e-3
        )
        torch.testing.assert_close(policy.distribution(noisy).log_prob(action), reference.log_prob(action))


@pytest.mark.parametrize("space", SPACES)
def test_kl_matches_torch_and_is_zero_to_itself(space: str, noisy: torch.Tensor) -> None:
    policy = GaussianPolicy(_generator(0), space=space, log_std=-1.0)
    reference = GaussianPolicy(_generator(1), space=space, log_std=-2.0)
    with torch.no_grad():
        expected = kl_divergence(policy.base_distribution(noisy), reference.base_distribution(noisy))
        torch.testing.assert_close(policy.kl(reference, noisy), expected.flatten(1).sum(1))
        torch.testing.assert_close(policy.kl(policy.frozen_copy(), noisy), torch.zeros(3), atol=1e-4, rtol=0)


@pytest.mark.parametrize("space", SPACES)
def test_entropy_matches_torch(space: str, noisy: torch.Tensor) -> None:
    policy = GaussianPolicy(_generator(), space=space, log_std=-2.0)
    with torch.no_grad():
        expected = policy.base_distribution(noisy).entropy().flatten(1).sum(1)
        torch.testing.assert_close(policy.entropy(noisy), expected)


def test_pixel_samples_have_the_policy_mean_and_std() -> None:
    policy = GaussianPolicy(_generator(), log_std=-2.0)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(3)).expand(400, 1, 28, 28)
    with torch.no_grad():
        a = policy.sample(x, generator=torch.Generator().manual_seed(4))
        dev = a - policy.mode(x)
    assert abs(float(dev.mean())) < 2e-3
    assert float(dev.std()) == pytest.approx(math.exp(-2.0), rel=0.01)


def test_logit_samples_lie_in_the_unit_interval_and_log_prob_stays_finite(noisy: torch.Tensor) -> None:
    policy = GaussianPolicy(_generator(), space="logit", log_std=1.0)
    with torch.no_grad():
        a = policy.sample(noisy)
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
        edge = torch.zeros_like(noisy)
        edge[..., ::2] = 1.0
        assert torch.isfinite(policy.log_prob(noisy, edge)).all()


def test_sampling_is_reproducible_with_a_generator(noisy: torch.Tensor) -> None:
    policy = GaussianPolicy(_generator())
    with torch.no_grad():
        a = policy.sample(noisy, generator=torch.Generator().manual_seed(5))
        b = policy.sample(noisy, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("space", SPACES)
def test_mode_is_the_generator_output(space: str, noisy: torch.Tensor) -> None:
    gen = _generator()
    policy = GaussianPolicy(gen, space=space)
    with torch.no_grad():
        assert torch.equal(policy.mode(noisy), gen(noisy))


def test_gradients_reach_the_generator_and_a_learnt_std_only(noisy: torch.Tensor) -> None:
    fixed = GaussianPolicy(_generator(), learn_std=False)
    learnt = GaussianPolicy(_generator(), learn_std=True)
    reference = fixed.frozen_copy()
    for policy in (fixed, learnt):
        a = policy.sample(noisy).detach()
        loss = -policy.log_prob(noisy, a).mean() + policy.kl(reference, noisy).mean()
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.generator.parameters())
    assert fixed.log_std.grad is None and not fixed.learn_std
    assert learnt.log_std.grad is not None and learnt.learn_std
    assert all(p.grad is None for p in reference.parameters())


def test_bad_arguments_raise_config_errors(noisy: torch.Tensor) -> None:
    with pytest.raises(ConfigError, match="unknown policy space"):
        GaussianPolicy(_generator(), space="latent")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="logits"):
        GaussianPolicy(torch.nn.Identity(), space="logit")
    with pytest.raises(ConfigError, match="finite"):
        GaussianPolicy(_generator(), log_std=float("nan"))
    with pytest.raises(ConfigError, match="pixel-space and a logit-space"):
        GaussianPolicy(_generator()).kl(GaussianPolicy(_generator(), space="logit"), noisy)


def test_from_checkpoint_wraps_the_shipped_generator(noisy: torch.Tensor) -> None:
    policy = GaussianPolicy.from_checkpoint(space="logit")
    with torch.no_grad():
        out = policy.mode(noisy)
    assert out.shape == noisy.shape and policy.space == "logit"


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize(("channels", "size"), [(3, (32, 32)), (1, (8, 8)), (3, (12, 20))])
def test_the_policy_works_on_any_image_shape(space: str, channels: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    gen = build_generator(GeneratorConfig(width=4, bottleneck=8, image_size=size, channels=channels)).eval()
    policy = GaussianPolicy(gen, space=space, log_std=-1.5)
    noisy = torch.rand(3, channels, *size, generator=torch.Generator().manual_seed(1))
    action = policy.sample(noisy, generator=torch.Generator().manual_seed(2))
    assert action.shape == noisy.shape and policy.mode(noisy).shape == noisy.shape
    log_prob = policy.log_prob(noisy, action)
    reference = Independent(Normal(policy.loc(noisy), policy.std), 3)
    if space == "pixel":
        assert torch.allclose(log_prob, reference.log_prob(action), atol=1e-3)
    assert log_prob.shape == (3,) and torch.allclose(policy.kl(policy.frozen_copy(), noisy), torch.zeros(3))
