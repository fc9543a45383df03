"""Fuzz the HTTP API from its own OpenAPI schema: whatever a client sends, the server never answers 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from hfrl.feedback import FeedbackStore
from hfrl.feedback.server import create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(tmp_path: Path, digits, mode: GenerationMode) -> None:
    with FeedbackStore(tmp_path / "fb.sqlite") as store:
        d = digits.take(0, 8)
        store.add_query("single", d.inputs, d.outputs, clean=d.clean)
        store.add_query("hero", d.inputs[:4], d.outputs[:4])
        store.add_query("pair", d.inputs[:4], d.outputs[:4], others=d.others[:4])
        app = create_app(store)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [op.ok() for op in schema.get_all_operations()]
        assert len(operations) >= 6
        unsatisfiable: list[str] = []

        for operation in operations:

            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case) -> None:  # noqa: ANN001 - schemathesis Case
                response = case.call()
                assert response.status_code < 500, (
                    case.method,
                    case.formatted_path,
                    case.body,
                    response.text,
                )

            try:
                check()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid input to generate.
                assert mode is GenerationMode.NEGATIVE
                unsatisfiable.append(operation.label)
        # Only operations whose one input is the optional session header have nothing invalid to send.
        assert set(unsatisfiable) <= {"GET /api/health", "GET /api/session", "POST /api/renew"}, unsatisfiable
        # Fuzzed labels went through the same validation as everyone else's: the database is consistent.
        assert store._reader().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert all(lab.value in ("good", "bad", "skip", "left", "right", "tie") for lab in store.labels())
