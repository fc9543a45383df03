import pytest
import torch

from hfrl.errors import ConfigError
from hfrl.noise import GaussianNoise, PoissonNoise, SaltPepperNoise, make_noise


@pytest.mark.parametrize("name", ["gaussian", "salt-pepper", "poisson"])
def test_noise_is_clipped_seeded_and_shaped(name: str) -> None:
    clean = torch.rand(8, 1, 28, 28)
    noise = make_noise(name, 0.3)
    a = noise(clean, torch.Generator().manual_seed(1))
    b = noise(clean, torch.Generator().manual_seed(1))
    c = noise(clean, torch.Generator().manual_seed(2))
    assert a.shape == clean.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gaussian_statistics() -> None:
    clean = torch.full((1, 1, 200, 200), 0.5)
    noisy = GaussianNoise(0.1)(clean, torch.Generator().manual_seed(0))
    assert abs(float((noisy - clean).std()) - 0.1) < 0.005
    assert abs(float((noisy - clean).mean())) < 0.005


def test_salt_pepper_rate() -> None:
    clean = torch.full((1, 1, 200, 200), 0.5)
    noisy = SaltPepperNoise(0.2)(clean, torch.Generator().manual_seed(0))
    changed = (noisy != 0.5).float().mean()
    assert abs(float(changed) - 0.2) < 0.01
    assert abs(float((noisy == 1.0).float().mean()) - 0.1) < 0.01


def test_poisson_is_unbiased_and_scales_with_level() -> None:
    clean = torch.full((1, 1, 200, 200), 0.25)
    low = PoissonNoise(0.1)(clean, torch.Generator().manual_seed(0))
    high = PoissonNoise(0.5)(clean, torch.Generator().manual_seed(0))
    assert abs(float(low.mean()) - 0.25) < 0.01
    assert float((high - clean).std()) > 2 * float((low - clean).std())


def test_zero_level_is_identity() -> None:
    clean = torch.rand(2, 1, 8, 8)
    for name in ("gaussian", "salt-pepper", "poisson"):
        assert torch.allclose(make_noise(name, 0.0)(clean, torch.Generator().manual_seed(0)), clean)


def test_bad_noise_settings() -> None:
    with pytest.raises(ConfigError, match="unknown noise"):
        make_noise("speckle")
    with pytest.raises(ConfigError, match=">= 0"):
        make_noise("gaussian", -1)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        make_noise("salt-pepper", 1.5)
    assert make_noise().with_level(0.2).level == 0.2
