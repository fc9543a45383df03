"""The demo's run config: TOML round trip, strict loading, flags mapped one to one onto fields."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pytest

from hfrl.errors import ConfigError
from hfrl.runconfig import (
    DemoConfig,
    add_config_flags,
    config_from_dict,
    dumps_config,
    field_docs,
    flag_name,
    flag_values,
    load_config,
    resolve_config,
    toml_value,
)

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(parser, DemoConfig)
    return parser


def test_every_field_has_a_docstring_and_a_place() -> None:
    docs = field_docs(DemoConfig)
    names = [f.name for f in dataclasses.fields(DemoConfig)]
    assert set(docs) == set(names)
    in_sections = [n for ns in DemoConfig.SECTIONS.values() for n in ns]
    assert len(in_sections) == len(set(in_sections)) and set(in_sections) <= set(names)


def test_dump_load_round_trip(tmp_path) -> None:
    config = DemoConfig(
        seed=3, out='runs/odd "name"\\x\u00e9\u007f', labels=50, selection="random", flip_rate=0.1,
        target_classes=(1, 7), lr=1e-5, human=True, data_dir=None,
    )  # fmt: skip
    text = dumps_config(config, header="a header\nsecond line")
    assert text.startswith("# a header\n# second line\n")
    assert "# data_dir = (unset)" in text and "[finetune]" in text
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path) == config
    assert config_from_dict(DemoConfig, tomllib.loads(dumps_config(DemoConfig()))) == DemoConfig()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (3, "3"),
        (0.5, "0.5"),
        (1e-20, "1e-20"),
        (2.0, "2.0"),
        ("a\tb", '"a\tb"'),  # tomli-w keeps a tab as it is (valid TOML)
        ((1, 2), "[1, 2]"),
    ],
)
def test_toml_values(value, text) -> None:
    assert toml_value(value) == text
    assert tomllib.loads(f"x = {text}")["x"] == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("sed = 1", "unknown key 'sed'"),
        ("[finetune]\nfoo = 1", "unknown key 'finetune.foo'"),
        ("[nonsense]\nseed = 1", "unknown key 'nonsense'"),
        ("labels = 10", "'labels' belongs in [feedback]"),
        ("[feedback]\nseed = 1", "'feedback.seed' belongs at the top level"),
        ("seed = 'zero'", "seed must be an integer"),
        ("seed = true", "seed must be an integer"),
        ("[finetune]\nlr = 'fast'", "finetune.lr must be a number"),
        ("[feedback]\nhuman = 1", "feedback.human must be true or false"),
        ("[data]\ntarget_classes = [1, 'two']", "data.target_classes must be a list of integers"),
        ("[feedback]\nselection = 'clever'", "selection must be one of active, random"),
        ("[finetune]\nfinetune_steps = 0", "finetune_steps must be >= 1"),
        ("data = 3", "'data' must be a table"),
        ("seed = ", "invalid TOML"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, toml, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = str(exc.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_every_field_is_a_flag_and_flags_override_the_file(tmp_path) -> None:
    parser = _parser()
    options = {o for a in parser._actions for o in a.option_strings}
    for f in dataclasses.fields(DemoConfig):
        assert flag_name(f.name) in options
    path = tmp_path / "c.toml"
    path.write_text("seed = 5\n[feedback]\nlabels = 40\nrounds = 2\n[finetune]\nlr = 0.001\n")
    args = parser.parse_args(["--labels", "60", "--no-progress", "--target-classes", "1-3", "--lr", "2e-4"])
    assert flag_values(args) == {"labels": 60, "progress": False, "target_classes": (1, 2, 3), "lr": 2e-4}
    config = resolve_config(path, flag_values(args))
    assert (config.seed, config.labels, config.rounds, config.lr) == (5, 60, 2, 2e-4)
    assert config.target_classes == (1, 2, 3) and config.progress is False
    assert resolve_config(None, {}) == DemoConfig()


@pytest.mark.parametrize("argv", [["--labels", "many"], ["--lr", "nan"], ["--target-classes", "x"]])
def test_bad_flag_values_are_usage_errors(argv) -> None:
    with pytest.raises(argparse.ArgumentError):
        _parser().parse_args(argv)


def test_out_of_range_flag_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rounds"):
        resolve_config(None, {"labels": 3, "rounds": 4})


def test_reward_reference_comes_from_the_task_and_an_unknown_one_is_refused() -> None:
    assert DemoConfig().reward_reference == "classical"  # the default task's: correlated noise
    assert DemoConfig(task="digits-white").reward_reference == "n2s"
    assert DemoConfig(task="digits-white", reward_reference="classical").reward_reference == "classical"
    with pytest.raises(ConfigError, match="reward_reference must be one of n2s, classical, got 'bm3d'"):
        DemoConfig(reward_reference="bm3d")
