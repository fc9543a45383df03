"""Feedback on the shipped generator's target-domain outputs, labelled by the synthetic labeler.

Training rows come from the target ``train`` split, held-out rows from ``test``; the reward models never
see the clean images (only the labeler does, to label).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from hfrl.data import Domains
from hfrl.evaluation import generate
from hfrl.judges import SyntheticLabeler
from hfrl.noise import make_noise
from hfrl.rewards import (
    DenoiserConfig,
    LabelledSamples,
    PreferencePairs,
    SelfSupervisedDenoiser,
    TripletFeedback,
    train_denoiser,
)
from hfrl.rewards.training import RewardTrainingConfig

N_TRAIN = 400
N_TEST = 300

FAST = RewardTrainingConfig(steps=120, batch_size=32)
"""A tiny budget that still beats chance: tests must stay fast on two CPU cores."""


@dataclass(frozen=True)
class Split:
    noisy: torch.Tensor
    output: torch.Tensor
    clean: torch.Tensor
    classes: torch.Tensor
    label: torch.Tensor  # the labeler's good (1) / bad (0), no flips

    def samples(self) -> LabelledSamples:
        return LabelledSamples(self.noisy, self.output, self.label)


def _split(domains: Domains, generator: torch.nn.Module, part: str, n: int, seed: int) -> Split:
    images = domains.target(part)
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    images = images.subset(idx)
    noisy = make_noise()(images.images, torch.Generator().manual_seed(seed + 1))
    output = generate(generator, noisy)
    labeler = SyntheticLabeler.from_pretrained()
    label = labeler.is_good(output, images.images, images.labels).float()
    return Split(noisy, output, images.images, images.labels, label)


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these tiny networks gain little from two, and lose a lot when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def denoiser(train_split: Split) -> SelfSupervisedDenoiser:
    """A quickly trained self-supervised denoiser (noisy training inputs only)."""
    model, _ = train_denoiser(train_split.noisy, DenoiserConfig(steps=150, batch_size=32, width=8))
    return model


@pytest.fixture(scope="session")
def train_split(domains: Domains, source_generator: torch.nn.Module) -> Split:
    return _split(domains, source_generator, "train", N_TRAIN, seed=10)


@pytest.fixture(scope="session")
def test_split(domains: Domains, source_generator: torch.nn.Module) -> Split:
    return _split(domains, source_generator, "test", N_TEST, seed=20)


def _pairs(split: Split, generator: torch.nn.Module, seed: int) -> tuple[PreferencePairs, torch.Tensor]:
    """Two outputs per clean image: the stored one and one from a second noise draw, compared by the
    labeler; the noisy input of the pair is the first draw's. Returns the pairs and a decided mask."""
    noisy2 = make_noise()(split.clean, torch.Generator().manual_seed(seed))
    other = generate(generator, noisy2)
    labeler = SyntheticLabeler.from_pretrained()
    words = labeler.compare(split.output, other, split.clean, split.classes)
    from hfrl.feedback.labels import preference_value

    pref = torch.tensor([preference_value(w) for w in words])
    return PreferencePairs(split.noisy, split.output, other, pref), pref != 0.5


@pytest.fixture(scope="session")
def train_pairs(train_split: Split, source_generator: torch.nn.Module) -> PreferencePairs:
    return _pairs(train_split, source_generator, seed=31)[0]


@pytest.fixture(scope="session")
def test_pairs(test_split: Split, source_generator: torch.nn.Module) -> tuple[PreferencePairs, torch.Tensor]:
    return _pairs(test_split, source_generator, seed=41)


@pytest.fixture(scope="session")
def train_triplets(train_split: Split) -> TripletFeedback:
    """HERO feedback: batches of 8 with good/bad labels and the best of each batch."""
    labeler = SyntheticLabeler.from_pretrained()
    labels, best = [], []
    for start in range(0, N_TRAIN, 8):
        sl = slice(start, start + 8)
        words, b = labeler.pick_best(train_split.output[sl], train_split.clean[sl], train_split.classes[sl])
        labels += [1.0 if w == "good" else 0.0 for w in words]
        mark = [False] * len(words)
        mark[b] = words[b] == "good"
        best += mark
    return TripletFeedback.from_arrays(train_split.noisy, train_split.output, labels, best)
