"""One reading of config values: text (flags, --set, grids) and typed values (TOML, JSON) by field type."""

from __future__ import annotations

import numpy as np
import pytest

from hfrl.agents.config import PPOConfig, TrainerConfig
from hfrl.errors import ConfigError
from hfrl.fields import field_docs, read_field
from hfrl.runconfig import DemoConfig


@pytest.mark.parametrize(
    ("cls", "name", "value", "expected"),
    [
        (TrainerConfig, "kl", "0.5", 0.5),
        (TrainerConfig, "kl", 1, 1.0),  # integers widen to floats
        (TrainerConfig, "kl", np.float32(0.25), 0.25),  # numpy scalars from a grid
        (TrainerConfig, "steps", "12", 12),
        (TrainerConfig, "learn_std", "yes", True),
        (TrainerConfig, "learn_std", "0", False),
        (TrainerConfig, "generator", "none", None),
        (TrainerConfig, "target_classes", "1-3", (1, 2, 3)),
        (TrainerConfig, "target_classes", [2, 5], (2, 5)),
        (TrainerConfig, "dataset", "1.5", "1.5"),  # a string field keeps its text as it is
        (PPOConfig, "target_kl", "null", None),
        (DemoConfig, "out", "runs/x", "runs/x"),
    ],
)
def test_values_are_read_as_the_field_type(cls, name, value, expected) -> None:
    got = read_field(cls, name, value)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "text", "message"),
    [
        ("steps", "many", None, "steps must be an integer, cannot read 'many'"),
        ("steps", True, None, "steps must be an integer"),
        ("steps", 1.5, None, "steps must be an integer"),
        ("steps", "3", False, "steps must be an integer"),  # a TOML string is not an integer
        ("kl", "nan", None, "kl must be a number"),
        ("kl", float("inf"), None, "kl must be a number"),
        ("learn_std", "maybe", None, "learn_std must be true or false"),
        ("learn_std", 1, None, "learn_std must be true or false"),
        ("target_classes", [1, "two"], None, "target_classes must be a list of integers"),
        ("target_classes", "x", None, "cannot read classes"),
        ("nope", "1", None, "'nope' is not a setting of TrainerConfig"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_field(name, value, text, message) -> None:
    with pytest.raises(ConfigError) as exc:
        read_field(TrainerConfig, name, value, text=text)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_field_docs_are_one_line_plain_text_and_inherited() -> None:
    docs = field_docs(PPOConfig)
    assert "target_kl" in docs and "dataset" in docs and "TASK_FIELDS" not in docs
    assert all("\n" not in d and "``" not in d for d in docs.values())
    assert docs["kl"] != field_docs(TrainerConfig)["kl"]  # PPO's own docstring wins
