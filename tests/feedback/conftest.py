"""Fixtures for the feedback tests: small batches of real digits, stores, a server process."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hfrl.data import ImageSet
from hfrl.feedback import FeedbackStore

REPO = Path(__file__).resolve().parents[2]
# `hfrl label ...` exactly as the console command runs it, but registering only the `label` subcommand:
# the full CLI imports every other subcommand (and their training stacks) first, seconds per start.
CLI = [
    sys.executable,
    "-c",
    "import sys; from hfrl.cli import OneLineArgumentParser, label; "
    "p = OneLineArgumentParser(prog='hfrl'); "
    "label.add_parser(p.add_subparsers(dest='command', parser_class=OneLineArgumentParser)); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))",
]


@dataclass(frozen=True)
class Digits:
    """A batch as a trainer would enqueue it: ``(N, 1, 28, 28)`` images and ``(N,)`` classes."""

    inputs: torch.Tensor
    outputs: torch.Tensor
    others: torch.Tensor
    clean: torch.Tensor
    classes: torch.Tensor

    def take(self, start: int, stop: int) -> Digits:
        return Digits(
            *(t[start:stop] for t in (self.inputs, self.outputs, self.others, self.clean, self.classes))
        )


def sha(path: Path) -> str:
    """SHA-256 of a file, to show it was left untouched."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def single_query(store: FeedbackStore, digits: Digits, n: int = 4, **kw: object) -> int:
    """A ``single`` query of the first ``n`` digits, with clean images and classes; returns its id."""
    d = digits.take(0, n)
    return store.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes, **kw)


@pytest.fixture(scope="session")
def digits(mnist: ImageSet) -> Digits:
    g = torch.Generator().manual_seed(0)
    clean = mnist.images[:64].clone()
    noisy = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    outputs = (0.8 * clean + 0.2 * torch.rand(clean.shape, generator=g)).clamp(0, 1)
    others = (0.5 * clean + 0.5 * torch.rand(clean.shape, generator=g)).clamp(0, 1)
    return Digits(noisy, outputs, others, clean, mnist.labels[:64].clone())


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[FeedbackStore]:
    with FeedbackStore(tmp_path / "feedback.sqlite") as s:
        yield s


class ServerProcess:
    """``hfrl label serve`` in a subprocess; ``url`` is what it printed."""

    def __init__(self, db: Path, *extra: str, timeout: float = 60.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [*CLI, "label", "serve", "--db", str(db), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        self.url = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            self.lines.append(line)
            match = re.search(r"(http://\S+)", line)
            if match:
                self.url = match.group(1).split("?")[0].rstrip("/")
                break
        if not self.url:
            self.proc.kill()
            raise RuntimeError(
                "server did not start:\n" + "".join(self.lines) + (self.proc.stdout.read() or "")
            )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def serve_cli() -> Iterator[type[ServerProcess]]:
    """Factory for ``hfrl label serve`` subprocesses, all stopped after the test."""
    started: list[ServerProcess] = []

    class Tracked(ServerProcess):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()
