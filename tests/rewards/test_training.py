"""Each objective trains on synthetic-labeler feedback and beats chance on held-out target outputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hfrl.errors import ConfigError, DataError
from hfrl.rewards import (
    LabelledSamples,
    RewardModelConfig,
    UnlabelledPairs,
    binary_report,
    make_reward_model,
    pairwise_report,
    train_ensemble,
    train_reward_model,
)
from tests.rewards.conftest import FAST

CHANCE_MARGIN = 0.05


@pytest.mark.parametrize("inputs", [("output",), ("noisy", "output", "residual")], ids=["output", "residual"])
def test_binary_objective_beats_chance(train_split, test_split, inputs) -> None:
    model = make_reward_model(RewardModelConfig(inputs=inputs), seed=0)
    result = train_reward_model(model, train_split.samples(), FAST)
    report = binary_report(result.model.predict(test_split.noisy, test_split.output), test_split.label)
    assert report["auc"] > 0.5 + CHANCE_MARGIN, report
    assert result.history and result.history[-1]["step"] == FAST.steps


def test_similarity_reward_beats_chance_from_50_labels(denoiser, train_split, test_split) -> None:
    model = make_reward_model(RewardModelConfig(arch="similarity"), seed=0, denoiser=denoiser)
    result = train_reward_model(model, train_split.samples().subset(range(50)), FAST)
    report = binary_report(result.model.predict(test_split.noisy, test_split.output), test_split.label)
    assert report["auc"] > 0.5 + CHANCE_MARGIN, report


def test_self_supervised_denoiser_denoises_without_clean_images(denoiser, test_split) -> None:
    from hfrl.metrics import ssim

    with torch.no_grad():
        estimate = denoiser(test_split.noisy)
    assert (
        estimate.shape == test_split.noisy.shape and 0 <= float(estimate.min()) <= float(estimate.max()) <= 1
    )
    assert ssim(estimate, test_split.clean).mean() > ssim(test_split.noisy, test_split.clean).mean() + 0.2


def test_denoiser_errors() -> None:
    from hfrl.rewards import DenoiserConfig, train_denoiser

    with pytest.raises(DataError, match="at least 8"):
        train_denoiser(torch.rand(3, 1, 28, 28))
    with pytest.raises(ConfigError):
        DenoiserConfig(grid=1)


def test_pairwise_objective_beats_chance(train_pairs, test_pairs) -> None:
    pairs, decided = test_pairs
    model = make_reward_model(RewardModelConfig(inputs=("output",)), seed=0)
    trained = train_reward_model(model, train_pairs, FAST).model
    a = trained.predict(pairs.noisy, pairs.left)
    b = trained.predict(pairs.noisy, pairs.right)
    report = pairwise_report(a[decided.numpy()], b[decided.numpy()], pairs.preference[decided])
    assert report["n"] > 50
    assert report["accuracy"] > 0.5 + CHANCE_MARGIN, report


def test_triplet_objective_beats_chance(train_triplets, test_split) -> None:
    model = make_reward_model(RewardModelConfig(arch="embedding", inputs=("output",)), seed=0)
    trained = train_reward_model(model, train_triplets, FAST).model
    scores = trained.predict(test_split.noisy, test_split.output)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert trained.references.shape[0] == int(train_triplets.best.sum())
    assert binary_report(scores, test_split.label)["auc"] > 0.5 + CHANCE_MARGIN


def test_auxiliary_loss_and_pretraining_run_and_are_logged(train_split, test_split) -> None:
    unlabelled = UnlabelledPairs(test_split.noisy, test_split.output)  # labels unused: allowed
    config = replace(FAST, steps=40, aux_weight=0.5, pretrain_steps=20)
    model = make_reward_model(RewardModelConfig(inputs=("noisy", "output", "residual")), seed=0)
    result = train_reward_model(model, train_split.samples(), config, unlabelled)
    assert any("loss/aux" in row for row in result.history)
    assert any("loss/pretrain" in row for row in result.history)
    true_pairs = result.model.predict(test_split.noisy, test_split.output, logits=True)
    swapped = result.model.predict(test_split.noisy.flip(0), test_split.output, logits=True)
    assert true_pairs.mean() > swapped.mean()  # the auxiliary task was learnt


def test_same_seed_same_numbers(train_split, test_split) -> None:
    config = replace(FAST, steps=15)
    data = train_split.samples().subset(range(64))
    runs = [
        train_reward_model(make_reward_model(seed=3), data, config).model.predict(
            test_split.noisy, test_split.output
        )
        for _ in range(2)
    ]
    assert (runs[0] == runs[1]).all()
    other = train_reward_model(make_reward_model(seed=4), data, replace(config, seed=4)).model
    assert not (other.predict(test_split.noisy, test_split.output) == runs[0]).all()


def test_ensemble_trains_each_member_on_its_own_resample(train_split) -> None:
    data = train_split.samples().subset(range(120))
    ensemble, results = train_ensemble(
        data,
        3,
        model_config=RewardModelConfig(inputs=("output",)),
        config=replace(FAST, steps=10),
        resampling="disjoint",
    )
    assert len(ensemble) == 3 and len(results) == 3
    params = [next(m.parameters()).detach() for m in ensemble.members]
    assert not torch.equal(params[0], params[1])


def test_one_class_or_empty_labels_are_refused(train_split) -> None:
    data = train_split.samples()
    only_good = data.subset(torch.nonzero(data.label > 0.5).flatten())
    with pytest.raises(DataError, match="both good and bad"):
        train_reward_model(make_reward_model(), only_good, FAST)
    with pytest.raises(DataError, match="no"):
        train_reward_model(make_reward_model(), data.subset([]), FAST)


def test_auxiliary_loss_needs_a_model_that_sees_the_input(train_split) -> None:
    with pytest.raises(ConfigError, match="noisy input"):
        train_reward_model(make_reward_model(), train_split.samples(), replace(FAST, aux_weight=1.0))


def test_triplet_objective_needs_an_embedding_model(train_triplets) -> None:
    with pytest.raises(ConfigError, match="EmbeddingReward"):
        train_reward_model(make_reward_model(), train_triplets, FAST)
    with pytest.raises(ConfigError, match="logit head"):
        train_reward_model(
            make_reward_model(RewardModelConfig(arch="embedding")),
            train_triplets,
            replace(FAST, aux_weight=1.0),
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": -1},
        {"lr": 0.0},
        {"label_smoothing": 0.5},
        {"aux_negatives": ("mirror",)},
        {"reference": "all"},
    ],
)
def test_bad_training_config_is_refused(kwargs) -> None:
    from hfrl.rewards import RewardTrainingConfig

    with pytest.raises(ConfigError):
        RewardTrainingConfig(**kwargs)


def test_records_validate_their_inputs() -> None:
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(DataError, match="label"):
        LabelledSamples.from_arrays(x, x, [0, 1, 2, 0])
    with pytest.raises(DataError, match="4 values"):
        LabelledSamples.from_arrays(x, x, [0, 1])
    with pytest.raises(DataError, match="shape"):
        LabelledSamples.from_arrays(x, x[:, :, :20], [0, 1, 1, 0])
    rec = LabelledSamples.from_arrays(x.numpy(), (x * 255).to(torch.uint8).numpy(), [0, 1, 1, 0])
    assert len(rec) == 4 and rec.positive_rate == 0.5
    assert len(rec.concat(rec).subset([0, 5, 7])) == 3
