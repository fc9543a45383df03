"""The rectified-flow model kind: its samplers' steps and log-probabilities, its loss, checkpoints, the shipped model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.diffusion import (
    DDPMTrainConfig,
    UNet2D,
    UNetConfig,
    denoising_error,
    denoising_loss,
    gaussian_log_prob,
    load_ddpm,
    load_model,
    make_scheduler,
    matching_loss,
    model_scheduler,
    random_timesteps,
    sample,
)
from hfrl.errors import CheckpointError, ConfigError
from hfrl.flow import (
    FLOW_DIGITS,
    FlowScheduler,
    FlowUNet2D,
    build_flow,
    flow_matching_loss,
    train_flow,
)
from hfrl.judges import Evaluator

TINY = UNetConfig(base_width=8, width_mults=(1, 2), time_dim=16, groups=4)


@pytest.fixture(scope="module")
def tiny_flow() -> FlowUNet2D:
    torch.manual_seed(0)
    model = FlowUNet2D(TINY).eval()
    for p in model.parameters():  # zero-initialised output layers would make every prediction 0
        p.data.add_(0.01 * torch.randn(p.shape))
    return model


def test_timestep_grid_runs_from_noise_evenly_in_t() -> None:
    s = FlowScheduler(num_inference_steps=10)
    assert s.timesteps.tolist() == [1000 - 100 * i for i in range(10)]
    assert [int(s.previous_timestep(t)) for t in (1000, 500, 100)] == [900, 400, 0]
    assert s.previous_timestep(torch.tensor([1000, 100])).tolist() == [900, 0]
    assert FlowScheduler(num_inference_steps=3).timesteps.tolist() == [1000, 667, 333]
    assert FlowScheduler(num_inference_steps=1000).timesteps.tolist() == list(range(1000, 0, -1))
    with pytest.raises(ConfigError):
        FlowScheduler(num_inference_steps=0)
    with pytest.raises(ConfigError):
        FlowScheduler(noise_level=-0.1)
    with pytest.raises(ConfigError):
        FlowScheduler().alpha_bar(500, torch.zeros(1, 1, 2, 2))


def test_sde_with_zero_noise_is_the_euler_ode() -> None:
    gen = torch.Generator().manual_seed(0)
    x, v = torch.randn(3, 1, 4, 4, generator=gen), torch.randn(3, 1, 4, 4, generator=gen)
    ode, sde0 = (
        make_scheduler("flow-ode", num_inference_steps=5),
        make_scheduler("flow-sde", num_inference_steps=5, noise_level=0.0),
    )
    sde = make_scheduler("flow-sde", num_inference_steps=5, noise_level=1e-4)
    for t in ode.timesteps.tolist():
        a, b = ode.step(v, t, x, generator=gen), sde0.step(v, t, x, generator=gen)
        assert torch.equal(a.prev_sample, b.prev_sample) and torch.equal(a.std, torch.zeros(3))
        assert torch.isnan(a.log_prob).all()
        assert torch.allclose(a.prev_sample, x - 0.2 * v)  # dt = -1/5
        assert torch.allclose(sde.step(v, t, x, generator=gen).mean, a.mean, atol=1e-6)  # a -> 0: the ODE


def test_sde_step_is_flow_grpos_gaussian_with_its_log_prob() -> None:
    gen = torch.Generator().manual_seed(1)
    x, v = torch.randn(2, 1, 4, 4, generator=gen), torch.randn(2, 1, 4, 4, generator=gen)
    s = FlowScheduler(num_inference_steps=4, noise_level=0.7)
    # An inner step: t = 0.5 -> 0.25.
    out = s.step(v, 500, x, generator=gen)
    sigma = 0.7 * math.sqrt(0.5 / 0.5)
    mean = x + (v + sigma**2 / (2 * 0.5) * (x + 0.5 * v)) * -0.25
    assert torch.allclose(out.mean, mean, atol=1e-6)
    assert torch.allclose(out.std, torch.full((2,), sigma * 0.5))
    assert torch.allclose(out.log_prob, gaussian_log_prob(out.prev_sample, out.mean, out.std))
    # Scoring a given sample gives the same log-probability; a far-off one scores lower.
    again = s.step(v, 500, x, prev_sample=out.prev_sample)
    assert torch.allclose(again.log_prob, out.log_prob)
    assert bool((s.step(v, 500, x, prev_sample=out.prev_sample + 1.0).log_prob < out.log_prob).all())
    # At t = 1 sigma_t is infinite; 1 - t is floored at the step size (Flow-GRPO's sigma_max).
    first = s.step(v, 1000, x, generator=gen)
    assert torch.allclose(first.std, torch.full((2,), 0.7 * math.sqrt(1 / 0.25) * 0.5))
    assert torch.isfinite(first.log_prob).all()


def test_exact_velocity_follows_the_straight_path() -> None:
    gen = torch.Generator().manual_seed(2)
    x0, eps = torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1, torch.randn(2, 1, 4, 4, generator=gen)
    s = FlowScheduler(num_inference_steps=3)
    x = eps  # t = 1
    for t in s.timesteps.tolist():
        assert torch.allclose(s.predict_original(eps - x0, t, x), x0, atol=1e-5)
        x = s.step(eps - x0, t, x).prev_sample
        tp = int(s.previous_timestep(t)) / 1000
        assert torch.allclose(x, (1 - tp) * x0 + tp * eps, atol=1e-5)
    assert torch.allclose(x, x0, atol=1e-5)


def test_sde_keeps_the_flows_marginals() -> None:
    # One data point x0: the exact velocity is v = (x - x0) / t and x_t ~ N((1 - t) x0, t^2 I). The SDE's
    # extra drift and noise must leave these marginals in place (up to Euler's error).
    x0 = torch.full((1, 1, 16, 16), 0.5)
    s = FlowScheduler(num_inference_steps=50, noise_level=0.7)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(256, 1, 16, 16, generator=gen)
    for t in s.timesteps.tolist():
        x = s.step((x - x0) / (t / 1000), t, x, generator=gen).prev_sample
        if t == 500:
            assert abs(float(x.mean()) - 0.25) < 0.02  # (1 - t) x0 at t = 0.48 -> 0.26
            assert abs(float(x.std()) - 0.48) < 0.05
    assert float((x - x0).abs().max()) < 0.1


def test_flow_model_samples_are_seeded(tiny_flow: FlowUNet2D) -> None:
    s = model_scheduler(tiny_flow, 3, stochastic=True)
    assert isinstance(s, FlowScheduler) and s.noise_level == 0.7
    a = sample(tiny_flow, s, 4, generator=torch.Generator().manual_seed(5))
    b = sample(tiny_flow, s, 4, generator=torch.Generator().manual_seed(5), batch_size=2)
    c = sample(tiny_flow, s, 4, generator=torch.Generator().manual_seed(6))
    assert a.shape == (4, 1, 28, 28) and torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, c)
    ode = model_scheduler(tiny_flow, 3)
    assert ode.noise_level == 0.0
    assert model_scheduler(UNet2D(TINY), 3).__class__.__name__ == "DDIMScheduler"


def test_matching_loss_dispatches_on_the_model_kind(tiny_flow: FlowUNet2D) -> None:
    gen = torch.Generator().manual_seed(4)
    x0, noise = torch.rand(3, 1, 28, 28, generator=gen) * 2 - 1, torch.randn(3, 1, 28, 28, generator=gen)
    k = torch.tensor([100.0, 500.0, 1000.0])
    with torch.no_grad():
        flow = matching_loss(tiny_flow, x0, k, noise)
        assert flow.shape == (3,)
        assert torch.allclose(flow, flow_matching_loss(tiny_flow, x0, k / 1000, noise))
        t = (k / 1000).view(-1, 1, 1, 1)
        manual = ((tiny_flow((1 - t) * x0 + t * noise, k) - (noise - x0)) ** 2).flatten(1).mean(1)
        assert torch.allclose(flow, manual)
        ddpm = UNet2D(TINY).eval()
        steps = torch.tensor([10, 500, 999])
        expected = ((ddpm(ddpm.schedule.add_noise(x0, noise, steps), steps) - noise) ** 2).flatten(1).mean(1)
        assert torch.allclose(matching_loss(ddpm, x0, steps, noise), expected)
        assert torch.equal(denoising_loss(ddpm, x0, steps, noise), matching_loss(ddpm, x0, steps, noise))
    ddpm_t = random_timesteps(ddpm, 64, torch.Generator().manual_seed(0))
    flow_t = random_timesteps(tiny_flow, 64, torch.Generator().manual_seed(0))
    assert ddpm_t.dtype == torch.int64 and int(ddpm_t.min()) >= 0 and int(ddpm_t.max()) < 1000
    assert flow_t.is_floating_point() and float(flow_t.min()) > 0 and float(flow_t.max()) <= 1000


def test_train_flow_smoke_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    logged: list[dict] = []
    ema = train_flow(
        torch.rand(16, 1, 28, 28),
        FlowUNet2D(TINY),
        DDPMTrainConfig(steps=4, batch_size=4),
        log=logged.append,
        log_every=2,
    )
    assert isinstance(ema, FlowUNet2D) and ema.kind == "flow"
    assert [row["step"] for row in logged] == [2, 4] and all(math.isfinite(row["loss"]) for row in logged)
    with pytest.raises(ConfigError):
        train_flow(torch.rand(4, 1, 28, 28), UNet2D(TINY))  # type: ignore[arg-type]
    save_checkpoint(tmp_path / "flow", ema, ema.kind, ema.config_dict())
    for loader in (load_model, load_ddpm):
        loaded = loader(tmp_path / "flow")
        assert isinstance(loaded, FlowUNet2D) and loaded.kind == "flow"
        x = torch.randn(2, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(loaded(x, 300), ema(x, 300))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "flow", kind="ddpm")
    with pytest.raises(ValueError):
        build_flow({"unet": {}, "bogus": 1})
    save_checkpoint(tmp_path / "clf", torch.nn.Linear(2, 2), "lora", {})
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "clf")


def test_shipped_flow_model_samples_recognisable_digits(evaluator: Evaluator) -> None:
    model = load_model(FLOW_DIGITS)
    assert isinstance(model, FlowUNet2D)
    for scheduler in (model_scheduler(model, 10), model_scheduler(model, 10, stochastic=True)):
        # Measured (seed 0, 100 samples, 10 steps): 80 % (ODE) and 88 % (SDE) read clearly as one digit, every
        # digit among them (ddpm_digits with DDIM: 78.5 % and 82.5 % on 200).
        images = sample(model, scheduler, 100, generator=torch.Generator().manual_seed(0))
        probs = evaluator.classifier.probabilities(images)
        confident = probs.max(1).values >= 0.5
        assert float(confident.float().mean()) >= 0.7, f"most samples read clearly as one digit ({scheduler})"
        assert len(torch.unique(probs.argmax(1)[confident])) >= 8, "and they are not all the same digit"


def test_denoising_error_of_the_flow_model_is_higher_off_the_data() -> None:
    from hfrl.data import load_embedded_mnist

    model = load_model(FLOW_DIGITS)
    digits = load_embedded_mnist().images[:16]
    err = denoising_error(model, digits)
    assert err.shape == (16,) and torch.equal(err, denoising_error(model, digits))
    blobs = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert float(denoising_error(model, blobs).mean()) > 3 * float(err.mean())  # measured: 17x
