"""Bad input on the command line: exit code 2, one line on stderr, and nothing written (issue 22).

Each case here was a traceback, a misleading message, a wasted minute or a saved result before the fix.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

import hfrl.cli as cli
from hfrl.cli import main
from hfrl.cli.common import resolve_checkpoint
from hfrl.cli.evaluate import resolve_generator_path
from hfrl.errors import ConfigError
from hfrl.judges import asset_path
from hfrl.pretrain import PretrainConfig, TrainingDiverged, pretrain


def _fails_in_one_line(argv: list[str], capsys, command: str) -> str:
    """Run ``hfrl ARGV``; assert exit code 2 and one ``hfrl COMMAND: error:`` line; return it."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"hfrl {command}: error:"), err
    assert "Traceback" not in captured.out + captured.err
    return err


@pytest.fixture()
def generator_run_dir(tmp_path: Path) -> Path:
    """A run directory as ``hfrl pretrain`` writes it: ``generator.json`` + ``generator.safetensors``."""
    run = tmp_path / "pretrain-run"
    run.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(str(asset_path("denoiser_source")) + suffix, run / f"generator{suffix}")
    return run


# -- hfrl pretrain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", ["-1", "0", "inf", "nan", "fast"])
def test_pretrain_rejects_a_learning_rate_that_is_not_positive_and_finite(tmp_path, capsys, lr) -> None:
    out = tmp_path / "out"
    err = _fails_in_one_line(["pretrain", "--lr", lr, "--out", str(out)], capsys, "pretrain")
    assert "--lr" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", -1.0), ("lr", float("inf")), ("epochs", 0), ("seed", -1), ("noise_level", -0.1)],
)
def test_pretrain_config_validates_for_the_python_api_too(field, value) -> None:
    with pytest.raises(ConfigError, match=field):
        PretrainConfig(**{field: value})


def test_pretrain_that_diverges_fails_and_saves_nothing(tmp_path, capsys) -> None:
    # Before: exit 0, "best validation PSNR -inf dB", and the untrained weights saved as the checkpoint.
    out = tmp_path / "out"
    argv = ["pretrain", "--lr", "1e30", "--epochs", "2", "--device", "cpu", "--quiet", "--out", str(out)]
    err = _fails_in_one_line(argv, capsys, "pretrain")
    assert "diverged" in err and "nothing was saved" in err
    assert not out.exists()


def test_pretrain_api_raises_on_divergence_and_writes_no_file(tmp_path, mnist) -> None:
    out = tmp_path / "api"
    out.mkdir()
    with pytest.raises(TrainingDiverged):
        pretrain(PretrainConfig(lr=1e30, epochs=2, device="cpu"), data=mnist, out_dir=out, progress=False)
    assert list(out.iterdir()) == []


# -- hfrl finetune and the generator / reward paths --------------------------------------------------------


def test_finetune_rejects_a_negative_seed(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["finetune", "--seed", "-1", "--reward", "labeler", "--device", "cpu", "--out", str(out)]
    err = _fails_in_one_line(argv, capsys, "finetune")
    assert "seed must be an integer >= 0" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "pretrain", "hero"])
def test_seed_options_reject_negative_values(tmp_path, capsys, command) -> None:
    err = _fails_in_one_line([command, "--seed", "-1", "--out", str(tmp_path / "o")], capsys, command)
    assert "--seed" in err and not (tmp_path / "o").exists()


def test_one_resolver_reads_a_run_directory_for_every_command(generator_run_dir, tmp_path, capsys) -> None:
    expected = generator_run_dir / "generator"
    assert resolve_checkpoint(generator_run_dir, "generator") == expected
    assert resolve_checkpoint(str(expected) + ".safetensors", "generator") == expected
    assert resolve_generator_path(generator_run_dir) == expected  # hfrl evaluate
    # hfrl finetune: before, "model.json: checkpoint config not found"; now the generator resolves and the
    # next bad input (the reward) is what is reported.
    out = tmp_path / "out"
    argv = ["finetune", "--generator", str(generator_run_dir), "--reward", str(tmp_path / "missing")]
    err = _fails_in_one_line([*argv, "--device", "cpu", "--out", str(out)], capsys, "finetune")
    assert "--reward" in err and "no such file or directory" in err, err
    assert not out.exists()


def test_finetune_accepts_a_pretrain_run_directory_end_to_end(generator_run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["finetune", "--agent", "rwl", "--generator", str(generator_run_dir), "--steps", "1"]
    tiny = ["--batch-size", "8", "--aux-batch-size", "4", "--eval-size", "8", "--reward", "labeler"]
    assert main([*argv, *tiny, "--device", "cpu", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["generator"] == str(generator_run_dir / "generator")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["finetune", "--reward", "MISSING"], "--reward MISSING: no such file or directory"),
        (["finetune", "--reward", "labeler", "--generator", "MISSING"], "--generator MISSING: no such file"),
        (
            ["finetune", "--reward", "labeler", "--generator", "EMPTYDIR"],
            "not a checkpoint or a run directory",
        ),
        (["evaluate", "--generator", "MISSING"], "--generator MISSING: no such file or directory"),
        (["evaluate", "--evaluator", "MISSING"], "--evaluator MISSING: no such file or directory"),
        (["bench", "--agents", "rwl", "--reward", "MISSING"], "--reward MISSING: no such file or directory"),
    ],
)
def test_missing_checkpoints_say_so(tmp_path, capsys, argv, message) -> None:
    # Before: finetune and bench said "unknown reward '/missing': expected 'labeler', ...".
    (tmp_path / "empty").mkdir()
    subst = {"MISSING": str(tmp_path / "missing"), "EMPTYDIR": str(tmp_path / "empty")}
    argv = [subst.get(a, a) for a in argv]
    out = tmp_path / "out"
    err = _fails_in_one_line([*argv, "--device", "cpu", "--out", str(out)], capsys, argv[0])
    assert message.replace("MISSING", subst["MISSING"]) in err, err
    assert not out.exists()


# -- hfrl reward train -------------------------------------------------------------------------------------


def test_reward_train_checks_label_counts_before_any_work(tmp_path, capsys, mnist) -> None:
    from hfrl.feedback import FeedbackStore
    from hfrl.feedback.store import LabelInput

    db = tmp_path / "feedback.sqlite"
    clean, classes = mnist.images[:2], mnist.labels[:2]
    with FeedbackStore(db) as store:
        query = store.add_query("single", clean, clean, clean=clean, classes=classes)
        items = store.items(query)
        store.submit_labels("me", [LabelInput(items[0].id, "good"), LabelInput(items[1].id, "bad")])
    out = tmp_path / "out"
    start = time.perf_counter()
    # the default model (similarity) trains a denoiser first: before, 25 s of it, then "0 good and 1 bad"
    err = _fails_in_one_line(["reward", "train", "--db", str(db), "--out", str(out)], capsys, "reward")
    seconds = time.perf_counter() - start
    assert "training split (1 of 2 labels; 1 held out" in err and "need both good and bad" in err, err
    assert seconds < 10, f"{seconds:.1f} s: work was done before the labels were checked"
    assert not out.exists()


# -- --import and the subcommand modules -------------------------------------------------------------------


def test_a_failing_import_shows_the_users_traceback_then_one_line(
    tmp_path, capsys, registry_snapshot
) -> None:
    user_file = tmp_path / "my_agent.py"
    user_file.write_text("def helper():\n    return 1 / 0\n\n\nhelper()\n")
    out = tmp_path / "out"
    code = main(["finetune", "--import", str(user_file), "--reward", "labeler", "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert lines[0] == "Traceback (most recent call last):"
    assert any(f'File "{user_file}", line 2, in helper' in line for line in lines), lines
    assert lines[-2] == "ZeroDivisionError: division by zero"
    assert (
        lines[-1] == f"hfrl finetune: error: --import {user_file} failed: ZeroDivisionError: division by zero"
    )
    assert not any("importlib" in line or "hfrl/" in line for line in lines), lines
    assert not out.exists()


def test_a_missing_import_name_stays_one_line(capsys) -> None:
    err = _fails_in_one_line(["finetune", "--import", "no_such_module_xyz"], capsys, "finetune")
    assert "No module named 'no_such_module_xyz'" in err


def test_a_missing_subcommand_module_fails_loudly(monkeypatch) -> None:
    # Before: the subcommand silently vanished from `hfrl --help`.
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "no_such_command"))
    with pytest.raises(ImportError, match="hfrl.cli.no_such_command"):
        cli.build_parser()


def test_sweep_rejects_a_negative_seed(tmp_path, capsys) -> None:
    argv = ["sweep", "--agent", "reward-grad", "--seed", "-1", "--out", str(tmp_path / "o")]
    err = _fails_in_one_line(argv, capsys, "sweep")
    assert "--seed" in err and not (tmp_path / "o").exists()


# -- your own images (--data PATH) -------------------------------------------------------------------------


def _bad_data(tmp_path: Path, kind: str) -> Path:
    """A path that ``--data`` must refuse in one line."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    if kind == "missing":
        return tmp_path / "nowhere"
    if kind == "not-npz":
        (tmp_path / "x.npz").write_bytes(b"not a zip")
        return tmp_path / "x.npz"
    if kind == "no-images":
        np.savez(tmp_path / "x.npz", pictures=np.zeros((4, 28, 28), np.uint8))
        return tmp_path / "x.npz"
    if kind == "csv":
        (tmp_path / "x.csv").write_text("1,2\n")
        return tmp_path / "x.csv"
    if kind == "uint16":
        np.savez(tmp_path / "x.npz", images=rng.integers(0, 17, (20, 28, 28)).astype(np.uint16))
        return tmp_path / "x.npz"
    if kind == "float":
        np.save(tmp_path / "x.npy", rng.random((20, 28, 28)).astype(np.float32) * 4095)
        return tmp_path / "x.npy"
    folder = tmp_path / "images"
    folder.mkdir()
    if kind == "mixed-sizes":
        Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(folder / "a.png")
        Image.fromarray(np.zeros((20, 28), np.uint8), mode="L").save(folder / "b.png")
    elif kind == "unreadable":
        Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(folder / "a.png")
        (folder / "b.png").write_bytes(b"not a png")
    elif kind == "empty":
        pass
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file or folder"),
        ("not-npz", "not a NumPy .npz file"),
        ("no-images", r"no array 'images' \(has pictures\)"),
        ("csv", "expected a .npy or .npz file"),
        ("uint16", r"uint16 in \[0, 16\].*pass max_value \(--max-value\)"),
        ("float", r"float32 in \[.*\]: float images must lie in \[0, 1\].*--max-value"),
        ("mixed-sizes", "images of different sizes: a.png is 28x28, b.png is 20x28"),
        ("unreadable", "b.png: cannot read as an image"),
        ("empty", "no images found"),
    ],
)
def test_finetune_refuses_bad_data_in_one_line(tmp_path, capsys, kind, message) -> None:
    out = tmp_path / "run"
    argv = ["finetune", "--data", str(_bad_data(tmp_path, kind)), "--out", str(out), "--device", "cpu"]
    err = _fails_in_one_line([*argv, "--reward", "labeler"], capsys, "finetune")
    assert re.search(message, err), err
    assert "tensor(" not in err and "array(" not in err
    assert not (out / "train.csv").exists()


def test_max_value_scales_integer_data_and_pretrain_takes_it_too(tmp_path, capsys) -> None:
    path = _bad_data(tmp_path, "uint16")
    err = _fails_in_one_line(["pretrain", "--data", str(path), "--epochs", "1"], capsys, "pretrain")
    assert "--max-value" in err
    out = tmp_path / "pre"
    argv = [
        "pretrain",
        "--data",
        str(path),
        "--max-value",
        "16",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["max_value"] == 16.0


def test_images_of_another_size_are_refused_before_training(tmp_path, capsys) -> None:
    import numpy as np

    np.save(tmp_path / "small.npy", np.zeros((20, 16, 16), np.uint8))
    np.save(tmp_path / "small2.npy", np.zeros((20, 16, 16), np.uint8))
    out = tmp_path / "run"
    argv = [
        "finetune",
        "--source-data",
        str(tmp_path / "small.npy"),
        "--target-data",
        str(tmp_path / "small2.npy"),
    ]
    argv += ["--evaluator", str(asset_path("evaluator_classifier")), "--reward", "labeler", "--out", str(out)]
    err = _fails_in_one_line([*argv, "--device", "cpu"], capsys, "finetune")
    assert "expects images of shape 1x28x28" in err and "are 1x16x16" in err
    assert not (out / "train.csv").exists()
