import math

import torch

from hfrl.metrics import psnr, psnr_gain_stats, ssim, summary


def test_psnr_known_values() -> None:
    clean = torch.zeros(2, 1, 8, 8)
    out = torch.full((2, 1, 8, 8), 0.1)  # MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(out, clean), torch.tensor([20.0, 20.0]))
    out2 = torch.full((1, 1, 8, 8), 0.01)  # MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr(out2, clean[:1]), torch.tensor([40.0]))
    assert math.isinf(float(psnr(clean[:1], clean[:1])[0]))


def test_ssim_known_values() -> None:
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    noisy = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    s = ssim(noisy, x)
    assert s.shape == (3,) and bool((s < 0.9).all())
    # structurally unrelated images score near zero
    other = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert float(ssim(other, x).abs().max()) < 0.1


def test_psnr_gain_stats() -> None:
    before = torch.tensor([10.0, 12.0, 14.0, 16.0])
    after = torch.tensor([11.0, 11.0, 17.0, 16.0])
    stats = psnr_gain_stats(after, before)
    assert stats["mean"] == 0.75
    assert stats["max"] == 3.0 and stats["min"] == -1.0
    assert stats["share_improved"] == 0.5
    assert abs(stats["std"] - float(torch.tensor([1.0, -1.0, 3.0, 0.0]).std(unbiased=False))) < 1e-6


def test_summary_ignores_non_finite() -> None:
    s = summary(torch.tensor([1.0, float("inf"), 3.0]))
    assert s["mean"] == 2.0 and s["max"] == 3.0
    assert math.isnan(summary(torch.tensor([float("inf")]))["mean"])


def test_correlation() -> None:
    from hfrl.metrics import correlation

    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(correlation(x, x), torch.ones(4))
    assert torch.allclose(correlation(1 - x, x), -torch.ones(4))
    assert torch.equal(correlation(torch.zeros_like(x), x), torch.zeros(4))


def test_ssim_window_shrinks_for_small_images_and_colour_is_scored() -> None:
    from hfrl.metrics import ssim_window

    assert ssim_window(28, 28) == (11, 1.5) and ssim_window(64, 12) == (11, 1.5)
    size, sigma = ssim_window(8, 20)
    assert size == 7 and abs(sigma - 1.5 * 7 / 11) < 1e-12
    assert ssim_window(9, 9)[0] == 9
    g = torch.Generator().manual_seed(0)
    for shape in [(4, 1, 8, 8), (4, 3, 12, 20), (4, 3, 32, 32)]:
        clean = torch.rand(shape, generator=g)
        noisy = (clean + 0.3 * torch.randn(shape, generator=g)).clamp(0, 1)
        same, worse = ssim(clean, clean), ssim(noisy, clean)
        assert same.shape == (4,) and torch.allclose(same, torch.ones(4), atol=1e-4)
        assert bool((worse < 0.9).all()) and psnr(noisy, clean).shape == (4,)
