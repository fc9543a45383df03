"""envs/ and agents/ install as hfrl.envs and hfrl.agents, in editable and in normal installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import importlib.util, hfrl, hfrl.envs, hfrl.agents; "
    "print(hfrl.__file__); print(hfrl.envs.__file__); print(hfrl.agents.__file__); "
    "print(importlib.util.find_spec('envs'), importlib.util.find_spec('agents'))"
)


def _probe(tmp_path: Path, env: dict | None = None) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_editable_install_maps_namespaces(tmp_path: Path) -> None:
    lines = _probe(tmp_path)
    assert lines[1] == str(ROOT / "envs" / "__init__.py")
    assert lines[2] == str(ROOT / "agents" / "__init__.py")
    assert lines[3] == "None None"  # no bare top-level envs/agents module


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of the sources: setuptools builds in the tree (build/, *.egg-info), and a build/ left
    # there by another build broke this one once ("File exists: build/bdist.../hfrl-0.1.0.dist-info").
    src = tmp_path_factory.mktemp("src") / "hfrl"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "runs", "bench-results", "__pycache__", ".*_cache"
        ),
    )
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return next(out.glob("hfrl-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "hfrl/envs/__init__.py" in names
    assert "hfrl/agents/__init__.py" in names
    assert "hfrl/agents/diffusion/trainer.py" in names  # the subpackage is listed in pyproject.toml
    assert "hfrl/experiments/sweep.py" in names
    assert "hfrl/assets/denoiser_source.safetensors" in names
    assert not any(n.startswith(("envs/", "agents/", "tests/", "scripts/")) for n in names)


def test_normal_install_imports(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    import os

    env = {**os.environ, "PYTHONPATH": str(target)}
    lines = _probe(tmp_path, env)
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target))
    assert lines[3] == "None None"
