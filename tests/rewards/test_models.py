"""Every reward model: gradients in forward, no-grad batched predict from arrays, checkpoint round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.errors import CheckpointError, ConfigError, DataError
from hfrl.generators import GeneratorConfig
from hfrl.rewards import (
    CNNReward,
    EmbeddingReward,
    RewardEnsemble,
    RewardModel,
    RewardModelConfig,
    SelfSupervisedDenoiser,
    build_reward_model,
    load_reward_model,
    make_reward_model,
    save_reward_model,
)


def _embedding() -> EmbeddingReward:
    model = make_reward_model(RewardModelConfig(arch="embedding"), seed=1)
    x = torch.rand(3, 1, 28, 28)
    model.set_references(x, x.flip(2))  # type: ignore[operator]
    return model  # type: ignore[return-value]


def _tiny_denoiser() -> SelfSupervisedDenoiser:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SelfSupervisedDenoiser(GeneratorConfig(family="unet", width=4)).eval()


MODELS = {
    "pair-residual": lambda: make_reward_model(
        RewardModelConfig(inputs=("noisy", "output", "residual")), seed=0
    ),
    "pair": lambda: make_reward_model(RewardModelConfig(inputs=("noisy", "output")), seed=0),
    "output-only": lambda: make_reward_model(RewardModelConfig(), seed=0),
    "embedding": _embedding,
    "similarity": lambda: make_reward_model(RewardModelConfig(arch="similarity"), denoiser=_tiny_denoiser()),
    "cnn-denoised": lambda: make_reward_model(
        RewardModelConfig(inputs=("output", "denoised", "denoised_residual")), denoiser=_tiny_denoiser()
    ),
    "ensemble-mean": lambda: RewardEnsemble([make_reward_model(seed=s) for s in range(3)], "mean"),
    "ensemble-product": lambda: RewardEnsemble(
        [make_reward_model(RewardModelConfig(inputs=("output",)), seed=s) for s in range(2)], "product"
    ),
}


@pytest.fixture(params=list(MODELS), ids=list(MODELS))
def model(request) -> RewardModel:
    return MODELS[request.param]().eval()


def _batch(n: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.rand(n, 1, 28, 28, generator=g)


def test_forward_is_a_reward_in_unit_interval_with_gradients(model) -> None:
    noisy, output = _batch()
    output.requires_grad_(True)
    reward = model(noisy, output)
    assert reward.shape == (5,) and reward.requires_grad
    assert bool(((reward >= 0) & (reward <= 1)).all())
    reward.sum().backward()
    assert output.grad is not None and output.grad.abs().sum() > 0  # agents backpropagate through it
    assert torch.allclose(torch.sigmoid(model.logits(noisy, output)), reward, atol=1e-5)


def test_predict_accepts_numpy_and_batches(model) -> None:
    noisy, output = _batch(7)
    expected = model(noisy, output).detach().numpy()
    got = model.predict(noisy.numpy(), output.squeeze(1).numpy(), batch_size=3)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (7,)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    uint8 = model.predict_th((noisy * 255).to(torch.uint8), (output * 255).to(torch.uint8))
    assert uint8.shape == (7,) and not uint8.requires_grad


def test_predict_leaves_training_mode_alone(model) -> None:
    model.train()
    model.predict(*_batch(2))
    assert model.training


def test_predict_rejects_bad_images(model) -> None:
    noisy, output = _batch(2)
    with pytest.raises(DataError, match="match"):
        model.predict(noisy, output[:1])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        model.predict(noisy, output * 3)


def test_output_only_model_needs_no_noisy_input() -> None:
    model = make_reward_model(RewardModelConfig(inputs=("output",)))
    _, output = _batch(2)
    assert model.predict(None, output).shape == (2,)
    with pytest.raises(DataError, match="noisy"):
        make_reward_model(RewardModelConfig(inputs=("noisy", "output"))).predict(None, output)


def test_checkpoint_round_trip(model, tmp_path) -> None:
    noisy, output = _batch(4)
    path = save_reward_model(tmp_path / "rm", model, metadata={"note": "test"})
    loaded, doc = load_checkpoint(tmp_path / "rm", kind="reward_model")
    assert type(loaded) is type(model) and doc["metadata"]["note"] == "test"
    torch.testing.assert_close(loaded(noisy, output), model(noisy, output))
    again = load_reward_model(path)
    torch.testing.assert_close(again.predict_th(noisy, output), model.predict_th(noisy, output))
    if isinstance(model, RewardEnsemble):
        assert (
            isinstance(loaded, RewardEnsemble)
            and loaded.combine == model.combine
            and len(loaded) == len(model)
        )


def test_checkpoint_with_a_bad_config_is_one_clear_error(tmp_path) -> None:
    save_reward_model(tmp_path / "rm", make_reward_model())
    doc = json.loads((tmp_path / "rm.json").read_text())
    doc["config"]["arch"] = "transformer"
    (tmp_path / "rm.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="transformer"):
        load_reward_model(tmp_path / "rm")
    doc["config"] = {"ensemble": {"combine": "median"}, "members": [RewardModelConfig().to_dict()]}
    (tmp_path / "rm.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="median"):
        load_reward_model(tmp_path / "rm")


@pytest.mark.parametrize(
    "config",
    [
        {"arch": "mlp"},
        {"inputs": ("clean",)},
        {"inputs": ()},
        {"image_size": (6, 30)},  # any size from 8x8 on (30x30 is fine)
        {"channels": 2},
        {"dropout": 1.0},
        {"color": 1},
    ],
)
def test_bad_model_configs_are_refused(config) -> None:
    with pytest.raises(ConfigError):
        build_reward_model({**RewardModelConfig().to_dict(), **config})


def test_config_dict_round_trip() -> None:
    config = RewardModelConfig(inputs=("output", "residual"), width=8)
    assert RewardModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert isinstance(build_reward_model(config.to_dict()), CNNReward)


def test_embedding_reward_is_rescaled_similarity() -> None:
    model = _embedding().eval()
    noisy, output = _batch(3)
    sim = model.similarity(noisy, output)
    eps = 1e-4  # the affine squeeze that keeps the logit finite
    torch.testing.assert_close(model(noisy, output), eps + (1 - 2 * eps) * (1 + sim) / 2, atol=1e-5, rtol=0)
    with pytest.raises(DataError, match="no reference"):
        model.set_references(noisy[:0], output[:0])


def test_models_that_need_a_denoiser_say_so() -> None:
    with pytest.raises(ConfigError, match="denoiser"):
        make_reward_model(RewardModelConfig(arch="similarity"))
    with pytest.raises(ConfigError, match="denoiser"):
        make_reward_model(RewardModelConfig(inputs=("output", "denoised")))
    with pytest.raises(ConfigError, match="input channel"):
        make_reward_model(RewardModelConfig(inputs=()))


def test_ensemble_computes_a_shared_denoiser_estimate_once() -> None:
    den = _tiny_denoiser()
    config = RewardModelConfig(arch="similarity")
    shared = RewardEnsemble([make_reward_model(config, seed=s, denoiser=den) for s in range(2)])
    x = torch.rand(2, 1, 28, 28)
    assert shared.denoise(x) is not None
    other = make_reward_model(
        config, denoiser=SelfSupervisedDenoiser(GeneratorConfig(family="unet", width=4))
    )
    assert RewardEnsemble([shared.members[0], other]).denoise(x) is None  # type: ignore[list-item]


@pytest.mark.parametrize(("channels", "size"), [(3, (32, 32)), (1, (8, 8)), (3, (12, 20)), (1, (30, 30))])
def test_reward_models_score_images_of_their_shape(channels: int, size: tuple[int, int]) -> None:
    from hfrl.rewards import RewardModelConfig, make_reward_model

    for inputs in (("output",), ("noisy", "output", "residual")):
        config = RewardModelConfig(inputs=inputs, width=4, hidden=8, image_size=size, channels=channels)
        model = make_reward_model(config, seed=0)
        x = torch.rand(5, channels, *size, generator=torch.Generator().manual_seed(1))
        scores = model(x, x.flip(0))
        assert scores.shape == (5,) and bool(((scores > 0) & (scores < 1)).all())
        scores.sum().backward()
        assert RewardModelConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    old.pop("channels")  # a checkpoint written before colour: grey
    assert RewardModelConfig.from_dict(old).channels == 1


def test_similarity_reward_with_a_classical_estimate_saves_its_settings_and_no_weights(tmp_path) -> None:
    from hfrl.classical import ClassicalDenoiser

    estimate = ClassicalDenoiser("tv", 0.2, gain=1.2, offset=-0.1)
    model = make_reward_model(RewardModelConfig(arch="similarity"), seed=0, denoiser=estimate)
    assert model.config.denoiser == {"classical": estimate.to_dict()}
    noisy, output = _batch(4)
    torch.testing.assert_close(model.denoise(noisy), estimate(noisy))
    path = save_reward_model(tmp_path / "rm", model)
    doc = json.loads((tmp_path / "rm.json").read_text())
    assert doc["config"]["denoiser"]["classical"]["method"] == "tv"
    again = load_reward_model(path)
    assert isinstance(again.denoiser, ClassicalDenoiser) and again.denoiser.to_dict() == estimate.to_dict()
    torch.testing.assert_close(again.predict_th(noisy, output), model.predict_th(noisy, output))
    with pytest.raises(ConfigError, match="SelfSupervisedDenoiser or a ClassicalDenoiser"):
        make_reward_model(RewardModelConfig(arch="similarity"), denoiser=torch.nn.Identity())
