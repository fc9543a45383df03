from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hfrl.censoring import CensorReward, CensorRewardConfig, ProductEnsemble, save_censor_reward
from hfrl.cli import main
from hfrl.feedback import FeedbackStore

FAST = ["--steps", "3", "--n", "6", "--batch-size", "6", "--quiet", "--device", "cpu"]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["censor", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--ddpm", "--reward", "--label", "--n", "--classifier-weight", "--forward-weight",
                   "--backward-steps", "--recurrences", "--malign", "--labeler", "--seed", "--device"):  # fmt: skip
        assert option in text


@pytest.mark.parametrize(
    "argv",
    [
        ["censor"],  # neither --reward nor --label
        ["censor", "--reward", "does/not/exist"],
        ["censor", "--label", "--reward", "x"],
        ["censor", "--label", "--n", "0"],
        ["censor", "--label", "--device", "tpu"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert "error" in _one_line_error(capsys)


def test_time_independent_reward_rejects_classifier_guidance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_censor_reward(tmp_path / "r", CensorReward(CensorRewardConfig(time_dependent=False, width=4)))
    code = main(
        [
            "censor",
            "--reward",
            str(tmp_path / "r"),
            "--classifier-weight",
            "1",
            "--out",
            str(tmp_path / "run"),
            *FAST,
        ]
    )
    assert code == 2 and "time-dependent" in _one_line_error(capsys)


def test_censor_with_trained_rewards_writes_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    for k in range(2):
        save_censor_reward(tmp_path / f"r{k}", ProductEnsemble([CensorReward(CensorRewardConfig(width=4))]))
    out = tmp_path / "run"
    code = main(["censor", "--reward", str(tmp_path / "r0"), str(tmp_path / "r1"), "--baseline",
                 "--backward-steps", "1", "--out", str(out), *FAST])  # fmt: skip
    assert code == 0
    result = json.loads((out / "censor.json").read_text())
    assert result["setup"] == "ensemble" and result["censored"]["n"] == 6 and "baseline" in result
    assert 0 <= result["censored"]["malign_rate"] <= 1 and result["guidance"]["classifier_weight"] == 1.0
    assert (out / "grid.png").stat().st_size > 0 and (out / "config.json").exists()
    assert "censored: malign" in capsys.readouterr().out


def test_censor_label_collects_through_the_feedback_store(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["censor", "--label", "--labeler", "synthetic", "--malign", "2", "--pool", "60", "--setup", "single", "--reward-iterations", "10",
                 "--out", str(out), *FAST])  # fmt: skip
    assert code == 0
    result = json.loads((out / "censor.json").read_text())
    assert (
        result["labels_malign"] >= 2
        and result["labels_used"] >= result["labels_malign"] + result["labels_benign"]
    )
    assert (out / "reward.safetensors").exists()
    with FeedbackStore(out / "feedback.sqlite") as store:
        assert len(store.labels()) == result["labels_used"]


def test_censor_label_with_people_serves_the_page_and_times_out_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [
        "censor",
        "--label",
        "--labeler",
        "people",
        "--port",
        "0",
        "--label-timeout",
        "0.3",
        "--pool",
        "5",
    ]
    code = main([*argv, "--out", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 2 and "labelling page: http://127.0.0.1:" in captured.out
    assert "not labelled within" in captured.err and len(captured.err.strip().splitlines()) == 1
    with FeedbackStore(out / "feedback.sqlite") as store:
        assert len(store.queries()) == 1 and store.labels() == []
