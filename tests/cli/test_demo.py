"""``hfrl demo`` end to end on tiny budgets: the report, reruns from config.toml, bad configs, --human."""

from __future__ import annotations

import json
import socket
import threading
import time
from html.parser import HTMLParser

import httpx
import pytest

from hfrl.cli import main
from hfrl.feedback import FeedbackStore

TINY = [
    "--device", "cpu", "--threads", "1", "--no-progress", "--labels", "16", "--rounds", "2", "--pool", "120",
    "--candidates", "60", "--denoiser-steps", "5", "--reward-steps", "10", "--finetune-steps", "4",
    "--batch-size", "16", "--eval-every", "2", "--eval-size", "20",
]  # fmt: skip


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        attrs = dict(attrs)
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    return out


def test_report_shows_existing_files_and_the_metrics(tiny_run, capsys) -> None:
    out = tiny_run
    page = (out / "report.html").read_text()
    parser = _Refs()
    parser.feed(page)
    assert any(r.endswith(".png") for r in parser.refs)
    for ref in parser.refs:
        assert (out / ref).is_file(), ref
    data = json.loads((out / "metrics.json").read_text())
    m = data["metrics"]
    for key in ("good_rate", "psnr", "ssim"):
        assert set(m["target"][key]) == {"before", "after", "change"}
    assert {"mean", "std", "max", "share_improved"} <= set(m["target_psnr_gain"])
    assert isinstance(m["source_retention"], float)
    assert data["labels"]["labels"] == 16 and len(data["labels"]["rounds"]) == 2
    assert list(data["stages_seconds"]) == [
        "setup",
        "denoiser",
        "labels",
        "reward",
        "finetune",
        "evaluate",
        "baselines",
        "report",
    ]
    assert (out / "config.toml").is_file() and (out / "finetune" / "generator.safetensors").is_file()


def test_report_and_summary_put_feedback_between_the_references(tiny_run) -> None:
    """Source generator, best label-free, feedback and supervised: one table, one grid, same inputs."""
    data = json.loads((tiny_run / "metrics.json").read_text())
    names = list(data["references"])
    assert names[0] == "source generator" and names[1].startswith("best label-free: ")
    assert names[2] == "feedback: reward-grad, 16 labels"
    assert names[3] == "supervised (clean targets, upper bound)"
    feedback = data["references"][names[2]]["target"]["good_rate"]
    assert feedback == data["metrics"]["target"]["good_rate"]["after"]
    # the best label-free row is the best of the source generator and the label-free candidates
    assert (
        data["references"][names[1]]["target"]["good_rate"]
        >= data["references"][names[0]]["target"]["good_rate"]
    )
    page = (tiny_run / "report.html").read_text()
    assert "Beside what you could get without feedback" in page and "figures/references.png" in page
    assert (tiny_run / "figures" / "references.png").stat().st_size > 1000


def test_rerun_from_config_gives_the_same_numbers(tiny_run, tmp_path, capsys) -> None:
    again = tmp_path / "again"
    assert main(["demo", "--config", str(tiny_run / "config.toml"), "--out", str(again)]) == 0
    first = json.loads((tiny_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert second["metrics"] == first["metrics"]
    assert second["labels"]["rounds"][1]["good"] == first["labels"]["rounds"][1]["good"]
    printed = capsys.readouterr().out
    assert f"report: {again / 'report.html'}" in printed
    for row in (
        "source generator",
        "best label-free: ",
        "feedback: reward-grad, 16 labels",
        "supervised (clean",
    ):
        assert row in printed
    # rerunning into the same directory replaces its results and leaves other files alone
    (again / "notes.txt").write_text("mine")
    assert (
        main(["demo", "--config", str(again / "config.toml"), "--finetune-steps", "1", "--eval-every", "0"])
        == 0
    )
    assert json.loads((again / "metrics.json").read_text())["final"]["steps"] == 1
    assert (again / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("toml", "argv", "message"),
    [
        ("[finetune]\nstepz = 3\n", [], "unknown key 'finetune.stepz'"),
        ("[feedback]\nlabels = 'many'\n", [], "feedback.labels must be an integer"),
        ("seed = 1.5\n", [], "seed must be an integer"),
        ("[finetune]\nagent = 'nope'\n", [], "unknown agent"),
        ("", ["--labels", "lots"], "--labels expects an integer"),
        ("", ["--selection", "clever"], "selection must be one of"),
        ("", ["--config", "/nonexistent/config.toml"], "cannot read config"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys, toml, argv, message) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    try:
        code = main(["demo", "--config", str(path), "--out", str(tmp_path / "out"), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_out_must_not_hold_someone_elses_files(tmp_path, capsys) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "report.html").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "busy"), *TINY]) == 2
    assert "holds report.html but no earlier demo run" in capsys.readouterr().err
    assert (tmp_path / "busy" / "report.html").read_text() == "mine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_human_mode_serves_the_page_and_waits_for_labels(tmp_path, capsys) -> None:
    """A 'person' labels through the page's HTTP API; the demo waits for them, then finishes."""
    from hfrl.judges import SyntheticLabeler

    out, port = tmp_path / "human", _free_port()
    base = f"http://127.0.0.1:{port}"
    labeler = SyntheticLabeler.from_pretrained(seed=0)
    answered: list[int] = []
    stop = threading.Event()

    def person() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    if "X-Hfrl-Session" not in client.headers:  # the server issues the labeler's identity
                        session = client.post("/api/session", json={"labeler": "person"}).json()["session"]
                        client.headers["X-Hfrl-Session"] = session
                    batch = client.get("/api/next").json()
                except httpx.TransportError:
                    time.sleep(0.1)  # the page is not up yet (or already gone)
                    continue
                if not batch.get("items"):
                    time.sleep(0.1)
                    continue
                with FeedbackStore(out / "feedback.sqlite", create=False) as store:  # a person sees the digit
                    ids = [store.item(item["id"]).sample_id for item in batch["items"]]
                    words = labeler.label(
                        store.images(ids), store.clean_images(ids), store.sample_classes(ids)
                    )
                labels = [{"item_id": item["id"], "value": w} for item, w in zip(batch["items"], words)]
                reply = client.post("/api/labels", json={"labels": labels})
                assert reply.status_code == 200, reply.text
                answered.append(len(labels))

    thread = threading.Thread(target=person, daemon=True)
    thread.start()
    try:
        code = main(["demo", "--human", "--port", str(port), "--no-open-browser", "--human-timeout", "120",
                     "--out", str(out), *TINY])  # fmt: skip
    finally:
        stop.set()
        thread.join(10)
    assert code == 0
    printed = capsys.readouterr().out
    assert f"labelling page: {base}/" in printed
    assert sum(answered) == 16
    data = json.loads((out / "metrics.json").read_text())
    assert data["reward"]["labeler"] == "human" and data["labels"]["labels"] == 16
    with FeedbackStore(out / "feedback.sqlite", create=False) as store:
        assert {label.labeler for label in store.labels()} == {"person"}
    with pytest.raises(httpx.TransportError):  # the page is gone once the labels are in
        httpx.get(base + "/api/health", timeout=2)


def test_human_mode_times_out_with_one_line(tmp_path, capsys) -> None:
    argv = ["demo", "--human", "--port", "0", "--no-open-browser", "--human-timeout", "1", "--out",
            str(tmp_path / "h"), *TINY]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not labelled in time" in err


@pytest.mark.slow
def test_full_default_demo_improves_the_generator(tmp_path) -> None:
    """The default run (labels 200, reward-grad 200 steps): the evaluator's good-rate rises clearly."""
    start = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path / "full"), "--no-progress"]) == 0
    seconds = time.perf_counter() - start
    m = json.loads((tmp_path / "full" / "metrics.json").read_text())["metrics"]
    assert m["target"]["good_rate"]["after"] > m["target"]["good_rate"]["before"] + 0.2
    assert m["source_retention"] > -1.0
    assert m["target_psnr_gain"]["mean"] > 1.0
    print(f"full demo: {seconds:.0f} s")
