from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.diffusion import (
    DDIMScheduler,
    DDPMScheduler,
    DDPMTrainConfig,
    NoiseSchedule,
    UNet2D,
    UNetConfig,
    build_ddpm,
    denoising_error,
    gaussian_log_prob,
    load_ddpm,
    make_scheduler,
    random_shift,
    sample,
    to_images,
    to_model_space,
    train_ddpm,
)
from hfrl.errors import CheckpointError, ConfigError
from hfrl.judges import Evaluator

TINY = UNetConfig(base_width=8, width_mults=(1, 2), time_dim=16, groups=4)


@pytest.fixture(scope="module")
def tiny_model() -> UNet2D:
    torch.manual_seed(0)
    model = UNet2D(TINY).eval()
    for p in model.parameters():  # zero-initialised output layers would make every prediction 0
        p.data.add_(0.01 * torch.randn(p.shape))
    return model


def test_timestep_grid_is_leading_with_offset_one() -> None:
    s = DDIMScheduler(num_inference_steps=25)
    assert s.timesteps.tolist() == [961 - 40 * i for i in range(25)]
    assert int(s.previous_timestep(1)) < 0  # the last step lands on abar_0
    assert DDIMScheduler(num_inference_steps=1000).timesteps.tolist() == list(range(999, -1, -1))
    assert (
        DDPMScheduler(num_inference_steps=1000).step(torch.zeros(1, 1, 2, 2), 0, torch.zeros(1, 1, 2, 2)).std
        == 0
    )
    with pytest.raises(ConfigError):
        DDIMScheduler(num_inference_steps=0)
    with pytest.raises(ConfigError):
        DDIMScheduler(eta=1.5)
    with pytest.raises(ConfigError):
        make_scheduler("euler")


def test_exact_noise_recovers_the_clean_sample() -> None:
    schedule = NoiseSchedule()
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1, 100, 500, 961])
    x_t = schedule.add_noise(x0, noise, t)
    s = DDIMScheduler(schedule)
    assert torch.allclose(s.predict_original(noise, t, x_t), x0, atol=1e-4)


def test_ddim_eta_zero_is_deterministic_without_a_density() -> None:
    s = DDIMScheduler(num_inference_steps=10, eta=0.0)
    x, eps = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    out = s.step(eps, 901, x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.prev_sample, out.mean)
    assert torch.all(out.std == 0) and torch.isnan(out.log_prob).all()


def test_step_log_prob_is_the_gaussian_density_of_the_sample() -> None:
    for s in (DDIMScheduler(num_inference_steps=10, eta=1.0), DDPMScheduler(num_inference_steps=10)):
        x, eps = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
        for t in s.timesteps.tolist():
            out = s.step(eps, t, x, generator=torch.Generator().manual_seed(1))
            assert out.std.shape == (3,) and torch.all(out.std > 0), "every step must have a density"
            ref = (
                torch.distributions.Normal(out.mean, out.std.view(-1, 1, 1, 1))
                .log_prob(out.prev_sample)
                .flatten(1)
                .sum(1)
            )
            assert torch.allclose(out.log_prob, ref, rtol=1e-4)
            again = s.step(eps, t, x, prev_sample=out.prev_sample)  # scoring a given action
            assert torch.allclose(again.log_prob, out.log_prob) and torch.equal(
                again.prev_sample, out.prev_sample
            )


def test_ddim_with_eta_one_has_the_ddpm_posterior_variance() -> None:
    ddim, ddpm = DDIMScheduler(num_inference_steps=20, eta=1.0), DDPMScheduler(num_inference_steps=20)
    x, eps = torch.randn(1, 1, 28, 28), torch.randn(1, 1, 28, 28)
    for t in ddim.timesteps.tolist():
        assert torch.allclose(ddim.step(eps, t, x).std, ddpm.step(eps, t, x).std, rtol=1e-4)


def test_ddpm_full_chain_matches_ho_et_al_posterior() -> None:
    schedule = NoiseSchedule()
    s = DDPMScheduler(schedule, num_inference_steps=1000, clip_sample=False)
    betas, abar = schedule.betas(), schedule.alphas_cumprod()
    x, eps = torch.randn(1, 1, 8, 8, dtype=torch.float64), torch.randn(1, 1, 8, 8, dtype=torch.float64)
    t = 500
    out = s.step(eps, t, x)
    x0 = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
    mean = (abar[t - 1].sqrt() * betas[t] / (1 - abar[t])) * x0 + (
        (1 - betas[t]).sqrt() * (1 - abar[t - 1]) / (1 - abar[t])
    ) * x
    var = betas[t] * (1 - abar[t - 1]) / (1 - abar[t])
    assert torch.allclose(out.mean, mean) and math.isclose(float(out.std[0]) ** 2, float(var), rel_tol=1e-6)


def test_per_sample_timesteps_match_scalar_ones() -> None:
    s = DDIMScheduler(num_inference_steps=10, eta=1.0)
    x, eps = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    a = s.step(eps, torch.tensor([901, 101]), x, prev_sample=x * 0.9)
    b0 = s.step(eps[:1], 901, x[:1], prev_sample=x[:1] * 0.9)
    b1 = s.step(eps[1:], 101, x[1:], prev_sample=x[1:] * 0.9)
    assert torch.allclose(a.log_prob, torch.cat([b0.log_prob, b1.log_prob]))


def test_gaussian_log_prob_nan_only_where_std_is_zero() -> None:
    x = torch.zeros(2, 3)
    lp = gaussian_log_prob(x, x, torch.tensor([0.0, 1.0]))
    assert torch.isnan(lp[0]) and math.isclose(float(lp[1]), -3 * 0.5 * math.log(2 * math.pi), rel_tol=1e-6)


def test_unet_shapes_time_dependence_and_checkpoint_round_trip(tiny_model: UNet2D, tmp_path: Path) -> None:
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        a, b = tiny_model(x, 10), tiny_model(x, torch.tensor([900, 900, 900]))
    assert a.shape == x.shape and not torch.allclose(a, b)
    save_checkpoint(tmp_path / "ddpm", tiny_model, "ddpm", tiny_model.config_dict())
    loaded, doc = load_checkpoint(tmp_path / "ddpm", kind="ddpm")
    assert isinstance(loaded, UNet2D) and loaded.schedule == tiny_model.schedule
    with torch.no_grad():
        assert torch.equal(loaded(x, 10), a)
    with pytest.raises(ValueError):
        build_ddpm({"unet": {}, "bogus": 1})
    with pytest.raises(ConfigError):
        UNetConfig(image_size=(30, 30), width_mults=(1, 2, 2))
    with pytest.raises(CheckpointError):
        load_ddpm(tmp_path / "missing")


def test_sampling_is_seeded_and_independent_of_the_batch_size(tiny_model: UNet2D) -> None:
    s = DDIMScheduler(tiny_model.schedule, num_inference_steps=3, eta=1.0)
    a = sample(tiny_model, s, 5, generator=torch.Generator().manual_seed(3), batch_size=5)
    b = sample(tiny_model, s, 5, generator=torch.Generator().manual_seed(3), batch_size=5)
    c = sample(
        tiny_model,
        DDIMScheduler(tiny_model.schedule, 3),
        5,
        generator=torch.Generator().manual_seed(3),
        batch_size=2,
    )
    d = sample(
        tiny_model,
        DDIMScheduler(tiny_model.schedule, 3),
        5,
        generator=torch.Generator().manual_seed(3),
        batch_size=5,
    )
    assert a.shape == (5, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and torch.allclose(c, d, atol=1e-5)
    # Stochastic steps too (eta = 1): every step's noise is drawn for the whole set, not per batch.
    for batch_size in (2, 3, 1):
        e = sample(tiny_model, s, 5, generator=torch.Generator().manual_seed(3), batch_size=batch_size)
        assert torch.allclose(e, a, atol=1e-5), batch_size
    calls: list[tuple[int, int]] = []
    sample(
        tiny_model,
        s,
        5,
        generator=torch.Generator().manual_seed(3),
        batch_size=2,
        progress=lambda *a: calls.append(a),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_pixel_range_helpers_and_shift_augmentation() -> None:
    img = torch.rand(4, 1, 28, 28)
    assert torch.allclose(to_images(to_model_space(img)), img)
    shifted = random_shift(img, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == img.shape and torch.equal(random_shift(img, 0, torch.Generator()), img)


def test_train_ddpm_smoke_returns_an_ema_copy() -> None:
    torch.manual_seed(0)
    model = UNet2D(TINY)
    logged: list[dict] = []
    ema = train_ddpm(
        torch.rand(16, 1, 28, 28),
        model,
        DDPMTrainConfig(steps=4, batch_size=4),
        log=logged.append,
        log_every=2,
    )
    assert ema is not model and not any(p.requires_grad for p in ema.parameters())
    assert [row["step"] for row in logged] == [2, 4] and all(math.isfinite(row["loss"]) for row in logged)


def test_shipped_sevens_ddpm_samples_recognisable_sevens(evaluator: Evaluator) -> None:
    model = load_ddpm()
    images = sample(
        model,
        DDIMScheduler(model.schedule, num_inference_steps=10),
        32,
        generator=torch.Generator().manual_seed(0),
    )
    probs = evaluator.classifier.probabilities(images)
    assert float((probs.argmax(1) == 7).float().mean()) >= 0.8


def test_shipped_digits_ddpm_samples_recognisable_digits(evaluator: Evaluator) -> None:
    model = load_ddpm("ddpm_digits")
    images = sample(
        model,
        DDIMScheduler(model.schedule, num_inference_steps=10),
        40,
        generator=torch.Generator().manual_seed(0),
    )
    probs = evaluator.classifier.probabilities(images)
    confident = probs.max(1).values >= 0.5
    assert float(confident.float().mean()) >= 0.7, "most samples read clearly as one digit"
    assert len(torch.unique(probs.argmax(1)[confident])) >= 6, "and they are not all the same digit"


def test_denoising_error_is_seeded_per_image_and_higher_off_the_data() -> None:
    from hfrl.data import load_embedded_mnist

    model = load_ddpm("ddpm_digits")
    digits = load_embedded_mnist().images[:16]
    err = denoising_error(model, digits)
    assert err.shape == (16,) and bool((err > 0).all())
    assert torch.equal(err, denoising_error(model, digits))  # seeded noise
    assert torch.allclose(denoising_error(model, digits, batch_size=4), err)  # the same noise per chunk order
    blobs = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert float(denoising_error(model, blobs).mean()) > 3 * float(err.mean())  # not digits: a poor fit
    assert denoising_error(model, digits[:0]).shape == (0,)
