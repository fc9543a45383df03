"""Label words and their numbers (:mod:`hfrl.feedback.labels`)."""

from __future__ import annotations

import pytest

from hfrl.feedback import labels as L


def test_label_numbers_live_in_one_place() -> None:
    assert L.rating_value("good") == 1.0 and L.rating_value("bad") == 0.0 and L.rating_value("skip") is None
    assert [L.preference_value(w) for w in ("left", "right", "tie")] == [1.0, 0.0, 0.5]
    assert L.values_for("pair") == ("left", "right", "tie") and L.values_for("hero") == (
        "good",
        "bad",
        "skip",
    )
    assert L.flip_preference("left") == "right" and L.flip_preference("tie") == "tie"
    for bad in (
        lambda: L.rating_value("left"),
        lambda: L.preference_value("good"),
        lambda: L.values_for("x"),
    ):
        with pytest.raises(ValueError):
            bad()
    # The judges and the store spell the words the same way.
    from hfrl import judges

    assert (judges.GOOD, judges.BAD, judges.SKIP, judges.LEFT, judges.RIGHT, judges.TIE) == L.ALL_VALUES
