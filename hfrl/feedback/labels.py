"""Label words and the one place where they become numbers.

Labels are stored as words, so a database stays readable without this code and a change of numeric
convention never rewrites history. Everything that trains on feedback turns words into numbers through
:func:`rating_value` and :func:`preference_value`:

=========  ======  ==========================================
word       number  meaning
=========  ======  ==========================================
``good``   1.0     the output is acceptable
``bad``    0.0     the output is not
``skip``   —       the labeler could not tell; left out
``left``   1.0     the left output of a pair is better
``right``  0.0     the right output is better
``tie``    0.5     neither is better
=========  ======  ==========================================

A *query* (a batch put to labelers) has one of three kinds:

* ``single``: each item is one output, labelled ``good``/``bad``/``skip``.
* ``pair``: each item is two outputs of the same input, labelled ``left``/``right``/``tie``.
* ``hero``: the whole batch is shown at once; each output is labelled ``good``/``bad``/``skip`` and the
  labeler marks the best one (HERO-style feedback).
"""

from __future__ import annotations

GOOD, BAD, SKIP = "good", "bad", "skip"
LEFT, RIGHT, TIE = "left", "right", "tie"

RATING_VALUES = (GOOD, BAD, SKIP)
"""Words a ``single`` or ``hero`` item may be labelled with."""
PAIR_VALUES = (LEFT, RIGHT, TIE)
"""Words a ``pair`` item may be labelled with."""
ALL_VALUES = RATING_VALUES + PAIR_VALUES

SINGLE, PAIR, HERO = "single", "pair", "hero"
KINDS = (SINGLE, PAIR, HERO)
"""Kinds of query."""

_RATING_NUMBERS = {GOOD: 1.0, BAD: 0.0}
_PREFERENCE_NUMBERS = {LEFT: 1.0, RIGHT: 0.0, TIE: 0.5}


def values_for(kind: str) -> tuple[str, ...]:
    """The label words allowed for items of a query ``kind``.

    Args:
        kind: ``single``, ``pair`` or ``hero``.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind == PAIR:
        return PAIR_VALUES
    if kind in (SINGLE, HERO):
        return RATING_VALUES
    raise ValueError(f"unknown query kind {kind!r}; expected one of {', '.join(KINDS)}")


def rating_value(word: str) -> float | None:
    """Number of a good/bad label: ``good`` -> 1.0, ``bad`` -> 0.0, ``skip`` -> ``None`` (left out).

    Raises:
        ValueError: for a word that is not a rating.
    """
    if word == SKIP:
        return None
    try:
        return _RATING_NUMBERS[word]
    except KeyError:
        raise ValueError(f"not a good/bad label: {word!r}") from None


def preference_value(word: str) -> float:
    """Number of a pairwise label: probability that the left output is better.

    ``left`` -> 1.0, ``right`` -> 0.0, ``tie`` -> 0.5.

    Raises:
        ValueError: for a word that is not a pairwise label.
    """
    try:
        return _PREFERENCE_NUMBERS[word]
    except KeyError:
        raise ValueError(f"not a pairwise label: {word!r}") from None


def flip_preference(word: str) -> str:
    """The same judgement with left and right swapped (``tie`` stays ``tie``)."""
    return {LEFT: RIGHT, RIGHT: LEFT}.get(word, word)
