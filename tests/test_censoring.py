from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.censoring import (
    BENIGN,
    MALIGN,
    NATURALLY_CROSSED,
    CensorLabels,
    CensorReward,
    CensorRewardConfig,
    GuidanceConfig,
    LabelBudget,
    MalignEvaluator,
    MalignLabeler,
    ProductEnsemble,
    RewardTrainConfig,
    StrokeParams,
    censored_sample,
    collect_labels,
    crossed_sevens,
    detector_training_set,
    draw_stroke,
    ensemble_subsets,
    guided_noise,
    label_directly,
    load_censor_reward,
    measure,
    random_affine,
    save_censor_reward,
    sevens,
    sevens_half,
    train_censor_reward,
    train_reward_setup,
)
from hfrl.diffusion import DDIMScheduler, UNet2D, UNetConfig, load_ddpm, sample
from hfrl.errors import ConfigError, DataError
from hfrl.feedback import FeedbackQueue, FeedbackStore, rating_value

FAST = RewardTrainConfig(iterations=15, batch_size=16)


@pytest.fixture(scope="module")
def plain() -> torch.Tensor:
    return sevens()


@pytest.fixture(scope="module")
def labeler_detector() -> MalignLabeler:
    return MalignLabeler.from_pretrained()


@pytest.fixture(scope="module")
def malign_evaluator() -> MalignEvaluator:
    return MalignEvaluator.from_pretrained()


@pytest.fixture(scope="module")
def toy_labels(plain: torch.Tensor) -> CensorLabels:
    """12 benign and 6 malign real 7s, as if labelled."""
    x, y = detector_training_set(plain[:12], seed=5)
    keep = torch.cat([torch.arange(12), torch.arange(12, 18)])
    return CensorLabels(x[keep], y[keep] == BENIGN, labels_used=18)


def test_crossed_sevens_are_deterministic_with_the_exact_share(plain: torch.Tensor) -> None:
    assert len(plain) == 500 - len(NATURALLY_CROSSED) == 415
    a, b = crossed_sevens(), crossed_sevens()
    assert torch.equal(a.images, b.images) and torch.equal(a.crossed, b.crossed)
    assert int(a.crossed.sum()) == round(0.15 * 415)
    assert torch.equal(a.images[~a.crossed], plain[~a.crossed])
    assert not torch.equal(crossed_sevens(seed=1).crossed, a.crossed)
    with pytest.raises(ConfigError):
        crossed_sevens(fraction=1.5)


def test_stroke_crosses_the_middle_rows_only(plain: torch.Tensor) -> None:
    params = StrokeParams(height=0.5, length=11, width=2, slope=0.0, offset=0.0, intensity=1.0)
    crossed = draw_stroke(plain[0], params)
    changed = (crossed - plain[0]).abs()[0] > 0.2  # (H, W)
    rows = torch.nonzero(changed.any(1)).flatten()
    ink = torch.nonzero(plain[0, 0].amax(1) > 0.3).flatten()
    middle = (ink[0] + ink[-1]) / 2
    assert len(rows) and (rows.float() - middle).abs().max() <= 4
    assert int(changed.any(0).sum()) >= 8  # long enough to see
    assert crossed.min() >= 0 and crossed.max() <= 1
    assert torch.equal(
        draw_stroke(plain[0], StrokeParams.draw(np.random.default_rng(0))),
        draw_stroke(plain[0], StrokeParams.draw(np.random.default_rng(0))),
    )


def test_detector_halves_are_disjoint(plain: torch.Tensor) -> None:
    a, b = sevens_half(plain, 0), sevens_half(plain, 1)
    assert len(a) + len(b) == len(plain)
    flat = {tuple(img.flatten()[::7].tolist()) for img in a}
    assert not any(tuple(img.flatten()[::7].tolist()) in flat for img in b)


def test_shipped_detectors_find_strokes_they_never_saw(
    plain: torch.Tensor, labeler_detector: MalignLabeler, malign_evaluator: MalignEvaluator
) -> None:
    for judge, half in ((labeler_detector, 0), (malign_evaluator, 1)):
        x, y = detector_training_set(sevens_half(plain, 1 - half)[:60], seed=999)
        accuracy = float((judge.is_malign(x) == (y == MALIGN)).float().mean())
        assert accuracy >= 0.95, f"{type(judge).__name__}: {accuracy:.2f}"


def test_malign_labeler_speaks_the_feedback_words(plain: torch.Tensor) -> None:
    x, y = detector_training_set(plain[:8], seed=3)
    labeler = MalignLabeler.from_pretrained()
    assert (
        all(callable(getattr(labeler, name)) for name in ("label", "compare", "pick_best"))
        and labeler.labeler_id
    )
    words = labeler.label(x)
    assert [rating_value(w) for w in words] == (y == BENIGN).float().tolist()  # good = benign = 1.0
    labels, best = labeler.pick_best(x)
    assert labels == words and y[best] == BENIGN
    assert set(labeler.compare(x[:8], x[8:])) <= {"left", "tie"}
    noisy = MalignLabeler.from_pretrained(flip_rate=0.5, skip_rate=0.5, seed=1).label(x)
    assert "skip" in noisy
    with pytest.raises(ConfigError):
        MalignLabeler(labeler.detector, flip_rate=0.9)


def test_malign_labeler_compare_makes_its_mistakes_and_skips(plain: torch.Tensor) -> None:
    x, _ = detector_training_set(plain[:8], seed=3)
    left, right = (
        x[:8].repeat(25, 1, 1, 1),
        x[8:].repeat(25, 1, 1, 1),
    )  # 200 pairs: benign left, crossed right
    detector = MalignLabeler.from_pretrained().detector
    clean = MalignLabeler(detector).compare(left, right)
    decided = sum(w != "tie" for w in clean)
    assert set(clean) <= {"left", "tie"} and decided >= 150
    flipped = MalignLabeler(detector, flip_rate=0.3, seed=4).compare(left, right)
    share = flipped.count("right") / decided
    assert 0.18 < share < 0.42, share  # flip_rate 0.3 of the decided answers are reversed
    assert flipped.count("tie") == clean.count("tie")  # a flip never turns a tie into an answer
    skipping = MalignLabeler(detector, skip_rate=0.4, seed=4).compare(left, right)
    skipped = (skipping.count("tie") - clean.count("tie")) / decided  # a pair cannot be skipped: a tie
    assert "right" not in skipping and 0.28 < skipped < 0.52, skipped
    assert MalignLabeler(detector, flip_rate=0.3, seed=4).compare(left, right) == flipped  # seeded


def test_labels_flow_through_the_feedback_store(tmp_path: Path, plain: torch.Tensor) -> None:
    x, y = detector_training_set(plain[:20], seed=4)
    pool = x[torch.randperm(40, generator=torch.Generator().manual_seed(0))]
    labeler = MalignLabeler.from_pretrained()
    with FeedbackQueue(tmp_path / "fb.sqlite") as queue:
        labels = collect_labels(pool, queue, LabelBudget(malign=3, page=4), labeler=labeler)
    assert labels.n_malign >= 3 and labels.labels_used % 4 == 0
    direct = label_directly(pool, MalignLabeler.from_pretrained(), LabelBudget(malign=3, page=4))
    assert torch.equal(direct.benign, labels.benign) and direct.labels_used == labels.labels_used
    with FeedbackStore(tmp_path / "fb.sqlite") as store:
        words = [label.value for label in store.labels()]
        assert len(words) == labels.labels_used and set(words) <= {"good", "bad"}
    with pytest.raises(DataError):
        label_directly(pool[:2], labeler, LabelBudget(malign=5))


def test_reward_models_train_save_and_combine(tmp_path: Path, toy_labels: CensorLabels) -> None:
    for time_dependent in (True, False):
        cfg = CensorRewardConfig(time_dependent=time_dependent, width=4)
        model = train_censor_reward(toy_labels.images, toy_labels.benign, cfg, FAST)
        x = torch.randn(3, 1, 28, 28)
        assert model.log_prob(x, 5).shape == (3,) and torch.all(model.log_prob(x, 5) <= 0)
        assert model.score(toy_labels.images[:3]).shape == (3,)
        save_censor_reward(tmp_path / f"r{time_dependent}", model)
        loaded = load_censor_reward(tmp_path / f"r{time_dependent}")
        assert isinstance(loaded, CensorReward) and torch.allclose(
            loaded.log_prob(x, 5), model.log_prob(x, 5)
        )
    members = [CensorReward(CensorRewardConfig(width=4)) for _ in range(3)]
    ensemble = ProductEnsemble(members)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(ensemble.log_prob(x, 7), sum(m.log_prob(x, 7) for m in members))
    save_censor_reward(tmp_path / "ens", ensemble)
    assert torch.allclose(load_censor_reward(tmp_path / "ens").log_prob(x, 7), ensemble.log_prob(x, 7))
    with pytest.raises(ConfigError):
        ProductEnsemble([CensorReward(CensorRewardConfig(time_dependent=False)), members[0]])
    with pytest.raises(DataError):
        train_censor_reward(toy_labels.images[:3], torch.ones(3, dtype=torch.bool))


def test_ensemble_subsets_and_setups(toy_labels: CensorLabels) -> None:
    subsets = ensemble_subsets(toy_labels, members=3, benign_per_member=4)
    malign = set(torch.nonzero(~toy_labels.benign).flatten().tolist())
    benign_sets = [set(s.tolist()) - malign for s in subsets]
    assert all(malign <= set(s.tolist()) for s in subsets) and all(len(b) == 4 for b in benign_sets)
    assert not (benign_sets[0] & benign_sets[1]) and not (benign_sets[1] & benign_sets[2])
    cheap = RewardTrainConfig(iterations=3, batch_size=8)
    assert isinstance(train_reward_setup(toy_labels, "single", train=cheap), CensorReward)
    assert isinstance(train_reward_setup(toy_labels, "union", members=2, train=cheap), CensorReward)
    ens = train_reward_setup(toy_labels, "ensemble", members=2, train=cheap)
    assert isinstance(ens, ProductEnsemble) and len(ens.members) == 2
    with pytest.raises(ConfigError):
        train_reward_setup(toy_labels, "bagging")


def test_random_affine_keeps_the_background() -> None:
    x = -torch.ones(2, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = random_affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isclose(out[:, :, 0, 0], torch.tensor(-1.0)).all()


class _DarkReward(torch.nn.Module):
    """``log r(x) = -mean(x + 1)``: prefers dark images; gradient known in closed form."""

    time_dependent = True

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def log_prob(self, x: torch.Tensor, timesteps: object = None) -> torch.Tensor:
        return -(x + 1).flatten(1).mean(1) * 50 + 0 * self.dummy


@pytest.fixture(scope="module")
def small_unet() -> UNet2D:
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(base_width=8, width_mults=(1, 2), time_dim=16, groups=4)).eval()
    for p in model.parameters():
        p.data.add_(0.01 * torch.randn(p.shape))
    return model


def test_each_guidance_term_pushes_towards_the_reward(small_unet: UNet2D) -> None:
    s = DDIMScheduler(small_unet.schedule, num_inference_steps=4)
    reward = _DarkReward()
    x = torch.randn(2, 1, 28, 28)
    t = int(s.timesteps[1])
    plain = guided_noise(small_unet, s, reward, x, t, GuidanceConfig())
    with torch.no_grad():
        assert torch.equal(plain, small_unet(x, t))
    x0_plain = s.predict_original(plain, t, x)
    for guidance in (
        GuidanceConfig(classifier_weight=1.0),
        GuidanceConfig(forward_weight=1.0),
        GuidanceConfig(backward_steps=3, backward_lr=0.1),
    ):
        eps = guided_noise(small_unet, s, reward, x, t, guidance)
        assert float(s.predict_original(eps, t, x).mean()) < float(x0_plain.mean()), guidance
    # Backward guidance moves x0_hat by exactly the optimised delta (3 Adam steps of 0.1 on a linear loss).
    eps = guided_noise(small_unet, s, reward, x, t, GuidanceConfig(backward_steps=3, backward_lr=0.1))
    shift = s.predict_original(eps, t, x) - s.predict_original(plain, t, x)
    assert torch.allclose(shift, torch.full_like(shift, -0.3), atol=1e-3)
    with pytest.raises(ConfigError):
        guided_noise(
            small_unet,
            s,
            CensorReward(CensorRewardConfig(time_dependent=False, width=4)),
            x,
            t,
            GuidanceConfig(classifier_weight=1.0),
        )
    with pytest.raises(ConfigError):
        GuidanceConfig(recurrences=0)


def test_censored_sample_is_seeded_and_recurrence_changes_it(small_unet: UNet2D) -> None:
    s = DDIMScheduler(small_unet.schedule, num_inference_steps=3)
    reward = _DarkReward()
    base = censored_sample(small_unet, s, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        base, sample(small_unet, s, 4, generator=torch.Generator().manual_seed(0)), atol=1e-6
    )
    g = GuidanceConfig(classifier_weight=2.0, recurrences=2)
    a = censored_sample(small_unet, s, 4, reward, g, generator=torch.Generator().manual_seed(0))
    b = censored_sample(small_unet, s, 4, reward, g, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.mean() < base.mean()
    # Deterministic DDIM without recurrence: the batch size does not matter (x_T is drawn up front).
    g1 = GuidanceConfig(classifier_weight=2.0)
    c = censored_sample(
        small_unet, s, 4, reward, g1, generator=torch.Generator().manual_seed(0), batch_size=4
    )
    d = censored_sample(
        small_unet, s, 4, reward, g1, generator=torch.Generator().manual_seed(0), batch_size=2
    )
    assert torch.allclose(c, d, atol=1e-5) and not torch.allclose(a, c)
    assert (
        GuidanceConfig(classifier_weight=1, backward_steps=5, backward_lr=0.05, recurrences=4).describe()
        == "classifier 1, backward 5x0.05, R=4"
    )


def test_censoring_lowers_the_malign_rate(
    labeler_detector: MalignLabeler, malign_evaluator: MalignEvaluator
) -> None:
    """The issue's check, on the shipped checkpoints: a few labels, one reward model, fewer crossed 7s."""
    model = load_ddpm()
    s = DDIMScheduler(model.schedule, num_inference_steps=8)
    pool = sample(model, s, 200, generator=torch.Generator().manual_seed(10))
    labels = label_directly(pool, MalignLabeler.from_pretrained(), LabelBudget(malign=10))
    reward = train_reward_setup(
        labels, "union", members=2, train=RewardTrainConfig(iterations=150), schedule=model.schedule
    )
    before = censored_sample(model, s, 150, generator=torch.Generator().manual_seed(1))
    after = censored_sample(
        model,
        s,
        150,
        reward,
        GuidanceConfig(classifier_weight=5.0),
        generator=torch.Generator().manual_seed(1),
    )
    rb, ra = measure(before, malign_evaluator), measure(after, malign_evaluator)
    assert rb.malign_rate >= 0.05, "the shipped DDPM makes crossed 7s"
    assert ra.malign_rate <= rb.malign_rate / 2, (rb, ra)
    assert ra.fidelity >= rb.fidelity - 0.05, "censored samples are still 7s"
