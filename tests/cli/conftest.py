"""Fixtures of the CLI tests."""

from __future__ import annotations

import sys

import pytest

from hfrl.agents import AGENTS


@pytest.fixture()
def registry_snapshot():
    """Undo the registrations and imports a test makes (--import registers 'elite')."""
    agents, modules = dict(AGENTS), set(sys.modules)
    yield
    AGENTS.clear()
    AGENTS.update(agents)
    for name in set(sys.modules) - modules:
        if name.startswith("hfrl_user_"):
            del sys.modules[name]
