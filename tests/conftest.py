"""Shared fixtures: the embedded digits and the shipped checkpoints, loaded once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import ClassifierConfig, DigitClassifier
from hfrl.data import Domains, ImageSet, load_embedded_mnist
from hfrl.judges import Evaluator, SyntheticLabeler, asset_path


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    torch.set_num_threads(1)  # steadier and faster on a shared 2-core machine


@pytest.fixture(scope="session")
def mnist() -> ImageSet:
    return load_embedded_mnist()


@pytest.fixture(scope="session")
def domains(mnist: ImageSet) -> Domains:
    return Domains(mnist)


@pytest.fixture(scope="session")
def source_generator() -> torch.nn.Module:
    model, _ = load_checkpoint(asset_path("denoiser_source"), kind="generator")
    return model


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    return Evaluator.from_pretrained()


@pytest.fixture()
def labeler() -> SyntheticLabeler:
    return SyntheticLabeler.from_pretrained()


@pytest.fixture()
def registry_snapshot():
    """Undo the registrations and imports a test makes (--import registers 'elite')."""
    from hfrl.agents import AGENTS

    agents, modules = dict(AGENTS), set(sys.modules)
    yield
    AGENTS.clear()
    AGENTS.update(agents)
    for name in set(sys.modules) - modules:
        if name.startswith("hfrl_user_"):
            del sys.modules[name]


@pytest.fixture()
def custom_agent_file(registry_snapshot) -> Path:
    """The example file that registers the ``elite`` agent (user code for ``--import``), undone after."""
    return Path(__file__).resolve().parents[1] / "scripts" / "examples" / "custom_agent.py"


@pytest.fixture(scope="session")
def untrained_labeler() -> SyntheticLabeler:
    """Tests check the code path, not the labeler's accuracy, so an untrained classifier will do."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitClassifier(ClassifierConfig())
    return SyntheticLabeler(model, seed=0, labeler_id="synthetic-test")


class TinyReward(nn.Module):
    """A small differentiable reward over the stacked (noisy, output) pair, for smoke tests."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
        )

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([noisy, output], dim=1)).squeeze(1)


@pytest.fixture()
def tiny_reward() -> TinyReward:
    return TinyReward()


@pytest.fixture()
def reward_factory() -> type[TinyReward]:
    return TinyReward


@pytest.fixture()
def tiny() -> dict:
    """Config fields of a tiny CPU budget."""
    return {
        "steps": 2,
        "batch_size": 8,
        "aux_batch_size": 4,
        "device": "cpu",
        "progress": False,
        "checkpoint_every": 0,
    }


def shapes_dataset(
    n: int, channels: int, height: int, width: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``(n, C, H, W)`` of two classes: a bright square (0) or a bright bar (1), coloured
    at random, on a dark background; and their classes."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, channels, height, width), dtype=np.uint8)
    labels = np.arange(n) % 2
    for i in range(n):
        colour = rng.integers(128, 256, size=(channels, 1, 1))
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        if labels[i] == 0:
            images[i, :, top : top + height // 2, left : left + width // 2] = colour
        else:
            images[i, :, top : top + 2, :] = colour
    return images, labels
