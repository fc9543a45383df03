"""``hfrl hero`` end to end on tiny budgets: headless, with people on the page (answered over HTTP), errors."""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from hfrl.cli import main
from hfrl.feedback import FeedbackStore

FAST = ["--rounds", "1", "--batch-size", "4", "--steps", "4", "--eval-samples", "4", "--device", "cpu",
        "--set", "reward_steps=2", "--set", "policy_epochs=1", "--set", "extra_samples=2", "--quiet"]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["hero", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in ("--method", "--target-class", "--rounds", "--batch-size", "--out", "--human", "--device",
                   "--epsilon", "--best-share", "--set", "--adapter", "--lora-rank", "--model"):  # fmt: skip
        assert option in text


@pytest.mark.parametrize(
    "argv",
    [
        ["hero", "--target-class", "12"],
        ["hero", "--rounds", "0"],
        ["hero", "--method", "nope"],
        ["hero", "--epsilon", "2"],
        ["hero", "--device", "tpu"],
        ["hero", "--set", "no_such_field=1"],
        ["hero", "--set", "oops"],
        ["hero", "--method", "rwl", "--epsilon", "0.2"],
        ["hero", "--set", "clip_range=5"],
        ["hero", "--set", "inner_rounds=x"],
        ["hero", "--set", "inner_rounds=0"],
        ["hero", "--adapter", "qlora"],
        ["hero", "--adapter", "full", "--lora-rank", "8"],
        ["hero", "--method", "d3po", "--lora-rank", "8"],
        ["hero", "--model", "flow", "--ddpm", "ddpm_sevens"],
        ["hero", "--model", "no/such/checkpoint", *FAST],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main([*argv, "--out", str(tmp_path / "run")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert "error" in _one_line_error(capsys)


def test_headless_flow_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["hero", "--model", "flow", "--method", "ddpo", "--out", str(out), *FAST]) == 0
    assert "ddpo: success" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "flow" and config["noise_level"] == 0.7
    assert json.loads((out / "model.json").read_text())["kind"] == "flow"
    from hfrl.diffusion import load_model
    from hfrl.flow import FlowUNet2D

    assert isinstance(load_model(out / "model"), FlowUNet2D)


def test_headless_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["hero", "--target-class", "3", "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "hero: success" in text and "4 labels" in text
    final = json.loads((out / "evaluation.json").read_text())
    assert final["target_class"] == 3 and final["labels_used"] == 4
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "hero" and config["reward_steps"] == 2 and config["num_inference_steps"] == 4


def test_resume_continues_a_run_and_refuses_other_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["hero", "--method", "ddpo", "--out", str(out), *FAST]) == 0
    assert FAST[:2] == ["--rounds", "1"]
    rounds = ["--rounds", "2", *FAST[2:]]
    assert main(["hero", "--method", "ddpo", "--resume", str(out), *rounds]) == 0
    with (out / "rounds.csv").open() as fh:
        assert [row["round"] for row in csv.DictReader(fh)] == ["0.0", "1.0", "2.0"]
    assert json.loads((out / "evaluation.json").read_text())["labels_used"] == 8
    capsys.readouterr()
    assert main(["hero", "--method", "ddpo", "--resume", str(out), *rounds, "--lr", "0.5"]) == 2
    assert "lr=" in _one_line_error(capsys)
    assert main(["hero", "--method", "ddpo", "--resume", str(tmp_path / "nothing"), *FAST]) == 2
    assert "state.safetensors" in _one_line_error(capsys)


def test_lora_run_writes_the_adapters(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["hero", "--out", str(out), "--adapter", "lora", "--lora-rank", "2", *FAST]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["adapter"], config["lora_rank"]) == ("lora", 2)
    assert (out / "adapters.safetensors").is_file() and (out / "model.safetensors").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _person(url: str, stop: threading.Event, answered: list[int], mark_best: bool = True) -> None:
    """A 'person' on the labelling page: every other item good, the first one best (``mark_best``: hero batches)."""
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            try:
                if "X-Hfrl-Session" not in client.headers:  # the server issues the labeler's identity
                    session = client.post("/api/session", json={"labeler": "person"}).json()["session"]
                    client.headers["X-Hfrl-Session"] = session
                batch = client.get("/api/next").json()
            except httpx.HTTPError:
                time.sleep(0.1)  # the page is not up yet
                continue
            if not batch["items"]:
                time.sleep(0.1)
                continue
            labels = [{"item_id": it["id"], "value": "good" if k % 2 == 0 else "bad", "best": mark_best and k == 0}
                      for k, it in enumerate(batch["items"])]  # fmt: skip
            reply = client.post("/api/labels", json={"labels": labels})
            assert reply.status_code == 200, reply.text
            answered.append(len(labels))


def test_human_mode_serves_the_page_and_learns_from_its_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    out = tmp_path / "run"
    stop, answered = threading.Event(), []
    person = threading.Thread(target=_person, args=(f"http://127.0.0.1:{port}", stop, answered), daemon=True)
    person.start()
    try:
        code = main(["hero", "--human", "--port", str(port), "--label-timeout", "120", "--out", str(out),
                     *FAST, "--rounds", "2"])  # fmt: skip
    finally:
        stop.set()
        person.join(timeout=10)
    assert code == 0 and answered == [4, 4]
    assert f"labelling page: http://127.0.0.1:{port}/" in capsys.readouterr().out
    with FeedbackStore(out / "feedback.sqlite") as store:
        labels = store.labels()
        assert len(labels) == 8 and {lab.labeler for lab in labels} == {"person"}
    assert (out / "reward.safetensors").exists()  # good and bad answers trained the embedding


def test_human_mode_times_out_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["hero", "--human", "--port", "0", "--label-timeout", "0.3", "--out", str(tmp_path / "run"), *FAST]
    )
    captured = capsys.readouterr()
    assert code == 2 and "not labelled within" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_batch_size_defaults_to_the_methods_own() -> None:
    from hfrl.agents.hero import make_online_config
    from hfrl.cli import build_parser
    from hfrl.cli.hero import config_fields

    args = build_parser().parse_args(["hero", "--method", "d3po"])
    fields = config_fields(args)
    assert "batch_size" not in fields
    assert make_online_config("hero", **config_fields(build_parser().parse_args(["hero"]))).batch_size == 32
    assert make_online_config("d3po", **fields).batch_size == 64
    args = build_parser().parse_args(["hero", "--batch-size", "16"])
    assert config_fields(args)["batch_size"] == 16


NEW_FAST = {
    "flow-grpo": ["--set", "group_size=2"],
    "nft": ["--set", "nft_steps=2", "--set", "nft_batch_size=4"],
    "awm": ["--set", "awm_steps=2", "--set", "awm_batch_size=4"],
    "best-of-n": ["--set", "best_of=2"],
}
"""Tiny budgets of the 2026 methods (``FAST`` without its hero-only ``extra_samples``)."""
BASE_FAST = ["--rounds", "1", "--batch-size", "4", "--steps", "4", "--eval-samples", "4", "--device", "cpu",
             "--set", "reward_steps=2", "--quiet"]  # fmt: skip


@pytest.mark.parametrize("method", list(NEW_FAST))
def test_the_2026_methods_run_headless(
    method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["hero", "--method", method, "--out", str(out), *BASE_FAST, *NEW_FAST[method]]) == 0
    assert f"{method}: success" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (
        config["method"] == method and json.loads((out / "evaluation.json").read_text())["labels_used"] == 4
    )


def test_the_2026_methods_ask_people_on_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # nft's binary mode learns from the page's good/bad answers directly (no reward model)
    port = _free_port()
    out = tmp_path / "run"
    stop, answered = threading.Event(), []
    person = threading.Thread(
        target=_person, args=(f"http://127.0.0.1:{port}", stop, answered, False), daemon=True
    )
    person.start()
    try:
        code = main(["hero", "--method", "nft", "--human", "--port", str(port), "--label-timeout", "120",
                     "--out", str(out), *BASE_FAST, *NEW_FAST["nft"]])  # fmt: skip
    finally:
        stop.set()
        person.join(timeout=10)
    assert code == 0 and answered == [4]
    assert "mark each sample good or bad" in capsys.readouterr().out
    with FeedbackStore(out / "feedback.sqlite") as store:
        labels = store.labels()
        assert [lab.value for lab in labels] == ["good", "bad", "good", "bad"]
        assert {lab.labeler for lab in labels} == {"person"}
    with (out / "rounds.csv").open() as fh:
        last = list(csv.DictReader(fh))[-1]
    assert float(last["charts/nft_samples"]) == 4.0  # every answered sample trained on
