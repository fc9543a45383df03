"""Shared fixtures: the embedded digits and the shipped checkpoints, loaded once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from hfrl.checkpoint import load_checkpoint
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
