"""Collecting labels in rounds through the queue (synthetic labeler and people), and the similarity reward
the labels sharpen."""

from __future__ import annotations

import threading

import pytest
import torch

from hfrl.errors import ConfigError, DataError
from hfrl.experiments.labels import collect_labels, round_sizes
from hfrl.feedback import FeedbackQueue, FeedbackStore, FeedbackTimeoutError, simulate
from hfrl.rewards import SimilarityReward, load_reward_model
from hfrl.rewards.denoiser import DenoiserConfig, train_denoiser
from hfrl.rewards.fit import ensemble_fitter, label_free_similarity_reward
from hfrl.rewards.training import RewardTrainingConfig


@pytest.fixture(scope="module")
def pool(mnist, source_generator):
    """64 target-domain digits, their noisy versions and the source generator's outputs."""
    from hfrl.evaluation import generate

    keep = torch.nonzero(mnist.labels > 0).flatten()[::40][:64]
    clean, classes = mnist.images[keep], mnist.labels[keep]
    noisy = (clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return noisy, generate(source_generator, noisy), clean, classes


@pytest.fixture(scope="module")
def fitter(pool):
    denoiser, _ = train_denoiser(pool[0], DenoiserConfig(steps=3, seed=0))
    return ensemble_fitter(denoiser, 2, RewardTrainingConfig(steps=5))


class AlwaysGood:
    """A labeler that likes everything (so an ensemble has one class to learn from)."""

    labeler_id = "optimist"

    def label(self, outputs, clean, classes):  # noqa: ANN001, D102
        return ["good"] * len(outputs)

    def compare(self, left, right, clean, classes):  # noqa: ANN001, D102
        return ["tie"] * len(left)

    def pick_best(self, outputs, clean, classes):  # noqa: ANN001, D102
        return self.label(outputs, clean, classes), 0


def test_round_sizes() -> None:
    assert round_sizes(10, 4) == [3, 3, 2, 2]
    assert round_sizes(3, 5) == [1, 1, 1]
    assert sum(round_sizes(200, 4)) == 200


@pytest.mark.parametrize("selection", ["active", "random"])
def test_rounds_ask_each_output_once_through_the_store(pool, fitter, tmp_path, selection) -> None:
    noisy, outputs, clean, classes = pool
    from hfrl.judges import SyntheticLabeler

    def run(path):
        with FeedbackQueue(path) as queue:
            got = collect_labels(
                queue, noisy, outputs, clean=clean, classes=classes, n_labels=21, rounds=3, selection=selection,
                fit_ensemble=fitter, labeler=SyntheticLabeler.from_pretrained(seed=0), candidates=20, seed=1,
                progress=False,
            )  # fmt: skip
            queries = queue.store.queries()
            stored = queue.store.rating_tensors()
        return got, queries, stored

    got, queries, stored = run(tmp_path / "a.sqlite")
    assert [r.round for r in got.rounds] == [1, 2, 3] and [len(r.indices) for r in got.rounds] == [7, 7, 7]
    assert len(set(got.asked.tolist())) == 21 and len(got) == 21
    assert set(got.values.tolist()) <= {0.0, 1.0}
    expected = ["random"] + ["disagreement" if selection == "active" else "random"] * 2
    assert [r.selection for r in got.rounds] == expected
    assert [q.status for q in queries] == ["done"] * 3 and [q.note for q in queries][1].endswith("round 2")
    assert len(stored) == 21 and torch.equal(stored.targets.sort().values, got.values.sort().values)
    samples = got.samples(noisy, outputs)
    assert torch.equal(samples.output, outputs[got.indices])
    again, _, _ = run(tmp_path / "b.sqlite")  # same seed, same questions and answers
    assert torch.equal(again.asked, got.asked) and torch.equal(again.values, got.values)
    summary = got.to_dict()
    assert summary["labels"] == 21 and len(summary["rounds"]) == 3


def test_active_round_falls_back_to_random_on_one_class(pool, fitter, tmp_path) -> None:
    noisy, outputs, clean, classes = pool
    got = collect_labels(
        tmp_path / "fb.sqlite", noisy, outputs, clean=clean, classes=classes, n_labels=8, rounds=2,
        fit_ensemble=fitter, labeler=AlwaysGood(), progress=False,
    )  # fmt: skip
    assert [r.selection for r in got.rounds] == ["random", "random"]
    assert "one class" in got.rounds[1].note or "no ensemble" in got.rounds[1].note


def test_people_answer_from_another_thread_and_timeouts_are_clean(pool, tmp_path, untrained_labeler) -> None:
    noisy, outputs, clean, classes = pool
    path = tmp_path / "people.sqlite"
    stop = threading.Event()
    with FeedbackStore(path) as store:
        person = threading.Thread(
            target=simulate,
            args=(store, untrained_labeler),
            kwargs={"follow": True, "stop": stop, "poll_interval": 0.05},
        )
        person.start()
        try:
            got = collect_labels(
                path, noisy, outputs, clean=clean, classes=classes, n_labels=6, rounds=2, selection="random",
                timeout=60, progress=True,
            )  # fmt: skip
        finally:
            stop.set()
            person.join()
    assert len(got.asked) == 6
    with pytest.raises(FeedbackTimeoutError, match="not labelled in time"):
        collect_labels(
            tmp_path / "nobody.sqlite",
            noisy,
            outputs,
            n_labels=4,
            selection="random",
            timeout=0.3,
            progress=False,
        )


def test_bad_arguments(pool, tmp_path) -> None:
    noisy, outputs, clean, _ = pool
    with pytest.raises(ConfigError, match="fit_ensemble"):
        collect_labels(tmp_path / "x.sqlite", noisy, outputs, n_labels=4)
    with pytest.raises(ConfigError, match="selection"):
        collect_labels(tmp_path / "x.sqlite", noisy, outputs, n_labels=4, selection="clever")
    with pytest.raises(DataError, match="pool of 64"):
        collect_labels(tmp_path / "x.sqlite", noisy, outputs, n_labels=65, selection="random")
    with pytest.raises(DataError, match="clean"):
        collect_labels(
            tmp_path / "x.sqlite", noisy, outputs, n_labels=4, selection="random", labeler=AlwaysGood()
        )
    assert len(collect_labels(tmp_path / "x.sqlite", noisy, outputs, n_labels=0, selection="random")) == 0


def test_label_free_reward_prefers_outputs_like_the_denoised_input(pool) -> None:
    noisy, outputs, _, _ = pool
    denoiser, _ = train_denoiser(noisy, DenoiserConfig(steps=3, seed=0))
    reward = label_free_similarity_reward(denoiser, noisy, outputs)
    assert isinstance(reward, SimilarityReward)
    with torch.no_grad():
        like = reward.predict_th(noisy, denoiser(noisy))
    junk = reward.predict_th(noisy, torch.rand_like(outputs))
    assert float(like.mean()) > 0.5 > float(junk.mean())


def test_monotone_similarity_head_keeps_its_signs_and_saves_plainly(pool, tmp_path) -> None:
    from hfrl.rewards import RewardModelConfig, make_reward_model, save_reward_model, train_reward_model
    from hfrl.rewards.fit import finish_monotone, make_monotone
    from hfrl.rewards.records import LabelledSamples

    noisy, outputs, _, _ = pool
    denoiser, _ = train_denoiser(noisy, DenoiserConfig(steps=3, seed=0))
    # labels that reward being *unlike* the denoised input: an unconstrained head would flip every sign
    features = label_free_similarity_reward(denoiser, noisy, outputs).predict_th(noisy, outputs)
    labels = (features < features.median()).float()
    model = make_monotone(make_reward_model(RewardModelConfig(arch="similarity"), 0, denoiser=denoiser))
    model = train_reward_model(
        model, LabelledSamples(noisy, outputs, labels), RewardTrainingConfig(steps=30, lr=0.05)
    )
    model = finish_monotone(model.model)
    w = model.head.weight.detach()[0]
    assert w[0] >= 0 and w[1] >= 0 and w[2] <= 0
    path = save_reward_model(tmp_path / "m", model)
    loaded = load_reward_model(path)
    assert torch.allclose(loaded.head.weight, model.head.weight)
