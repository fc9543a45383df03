import math

import pytest
import torch

from hfrl.errors import ConfigError
from hfrl.noise import GaussianNoise, PoissonNoise, SaltPepperNoise, make_noise


@pytest.mark.parametrize("shape", [(8, 1, 28, 28), (8, 3, 12, 20), (8, 1, 8, 8)])
@pytest.mark.parametrize("name", ["gaussian", "salt-pepper", "poisson", "correlated", "poisson-gaussian"])
def test_noise_is_clipped_seeded_and_shaped(name: str, shape: tuple[int, ...]) -> None:
    clean = torch.rand(*shape)
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


def _lag_correlation(noise: torch.Tensor, lag: int) -> float:
    """Mean correlation of the noise between pixels ``lag`` apart, along rows and columns."""
    n = noise - noise.mean()
    rows = (n[..., :, lag:] * n[..., :, :-lag]).mean()
    cols = (n[..., lag:, :] * n[..., :-lag, :]).mean()
    return float((rows + cols) / 2 / n.var())


@pytest.mark.parametrize("length", [1.0, 2.0])
def test_correlated_noise_statistics(length: float) -> None:
    """Unit-energy kernel: std is the level; correlation at lag d is exp(-d^2 / (4 length^2))."""
    clean = torch.full((16, 1, 64, 64), 0.5)
    noise = make_noise(f"correlated:length={length}", 0.1)
    residual = noise(clean, torch.Generator().manual_seed(0)) - clean
    assert abs(float(residual.std()) - 0.1) < 0.003
    for lag in (1, 2):
        expected = math.exp(-(lag**2) / (4 * length**2))
        assert abs(_lag_correlation(residual, lag) - expected) < 0.03, (lag, expected)
    # white noise for comparison: no correlation at lag 1
    white = make_noise("gaussian", 0.1)(clean, torch.Generator().manual_seed(0)) - clean
    assert abs(_lag_correlation(white, 1)) < 0.02


def test_correlated_noise_is_the_same_at_the_border() -> None:
    """The kernel runs over a larger canvas: border pixels have the same variance as central ones."""
    clean = torch.full((256, 1, 28, 28), 0.5)
    residual = make_noise("correlated", 0.1)(clean, torch.Generator().manual_seed(0)) - clean
    assert abs(float(residual[..., 0, :].std()) - float(residual[..., 14, :].std())) < 0.006


def test_poisson_gaussian_variance() -> None:
    """Variance = x / peak (shot) + read^2 (read), with peak = 1 / level^2."""
    clean = torch.full((1, 1, 300, 300), 0.4)
    level, read = 0.2, 0.05
    noisy = make_noise(f"poisson-gaussian:read={read}", level)(clean, torch.Generator().manual_seed(0))
    expected = 0.4 * level**2 + read**2
    assert abs(float(noisy.var()) - expected) < 0.05 * expected
    assert abs(float(noisy.mean()) - 0.4) < 0.005


def test_noise_spec_round_trips_and_rejects_bad_parameters() -> None:
    noise = make_noise("correlated:length=1.5", 0.3)
    assert noise.spec == "correlated:length=1.5" and make_noise(noise.spec, 0.3) == noise
    assert make_noise("gaussian", 0.2).spec == "gaussian"
    for bad, match in [
        ("correlated:width=2", "cannot read 'width=2'"),
        ("gaussian:length=1", "takes no parameters"),
        ("correlated:length=x", "must be a number"),
        ("correlated:length=0", "length must be in"),
        ("blur", "unknown noise model"),
    ]:
        with pytest.raises(ConfigError, match=match):
            make_noise(bad, 0.3)


def test_correlated_noise_on_colour_images_is_correlated_within_each_channel_only() -> None:
    clean = torch.full((64, 3, 16, 16), 0.5)
    noise = make_noise("correlated", 0.1)
    residual = noise(clean, torch.Generator().manual_seed(0)) - clean
    r, g = residual[:, 0], residual[:, 1]
    across_pixels = torch.corrcoef(torch.stack([r[:, :, :-1].flatten(), r[:, :, 1:].flatten()]))[0, 1]
    across_channels = torch.corrcoef(torch.stack([r.flatten(), g.flatten()]))[0, 1]
    assert float(across_pixels) > 0.5 and abs(float(across_channels)) < 0.05
