"""A damaged trainer checkpoint is refused with one line naming the file, never a traceback or a silent resume."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hfrl.agents import make_config, make_trainer
from hfrl.errors import CheckpointError

TINY = {"steps": 4, "batch_size": 8, "aux_batch_size": 4, "device": "cpu", "progress": False, "eval_every": 0}


def _trainer(run_dir: Path, **changes: Any):  # noqa: ANN202
    config = make_config("reinforce", **{**TINY, **changes}, reward="labeler")
    return make_trainer("reinforce", config, run_dir=run_dir)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A run directory with a checkpoint after two updates (optimiser moments included)."""
    run_dir = tmp_path_factory.mktemp("saved")
    trainer = _trainer(run_dir)
    for _ in range(2):
        trainer.update()
        trainer.step += 1
    trainer.save_state()
    return run_dir


def _read(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = str(run_dir / "state.safetensors")
    with safe_open(path, framework="pt") as fh:
        metadata = dict(fh.metadata())
    return load_file(path), metadata


def _rewrite(
    run_dir: Path, tensors: dict[str, torch.Tensor], doc: dict | None = None, **metadata: str
) -> None:
    """Write the state file again, with a document whose digest matches unless ``metadata`` says otherwise."""
    old = _read(run_dir)[1]
    text = old["hfrl_state"] if doc is None else json.dumps(doc)
    meta = {
        **old,
        "hfrl_state": text,
        "hfrl_state_sha256": hashlib.sha256(text.encode()).hexdigest(),
        **metadata,
    }
    save_file(tensors, str(run_dir / "state.safetensors"), metadata=meta)


def _doc(run_dir: Path) -> dict:
    return json.loads(_read(run_dir)[1]["hfrl_state"])


def _first_policy_key(tensors: dict[str, torch.Tensor]) -> str:
    return next(k for k in tensors if k.startswith("policy.") and tensors[k].dim() >= 2)


def _wrong_shape(d: Path) -> None:
    t, _ = _read(d)
    key = _first_policy_key(t)
    _rewrite(d, {**t, key: torch.zeros(3, 3)})


def _missing_tensor(d: Path) -> None:
    t, _ = _read(d)
    del t[_first_policy_key(t)]
    _rewrite(d, t)


def _missing_rng(d: Path) -> None:
    t, _ = _read(d)
    del t["rng.trainer"]
    _rewrite(d, t)


def _wrong_optimiser_shape(d: Path) -> None:
    t, _ = _read(d)
    key = next(k for k in t if k.startswith("optim.") and k.endswith("exp_avg"))
    _rewrite(d, {**t, key: torch.zeros(7)})


def _without(key: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        doc = _doc(d)
        del doc[key]
        _rewrite(d, _read(d)[0], doc)

    return damage


def _with(key: str, value: Any) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        _rewrite(d, _read(d)[0], {**_doc(d), key: value})

    return damage


def _digest_mismatch(d: Path) -> None:
    _rewrite(d, _read(d)[0], hfrl_state=json.dumps({**_doc(d), "step": 3}), hfrl_state_sha256="0" * 64)


def _truncated(d: Path) -> None:
    path = d / "state.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(d: Path) -> None:
    (d / "state.safetensors").write_bytes(b"")


def _gone(d: Path) -> None:
    (d / "state.safetensors").unlink()


def _legacy_step_ten(d: Path) -> None:
    """A checkpoint of the old layout (document in state.json only) whose step is a word."""
    t, _ = _read(d)
    doc = {**_doc(d), "step": "ten"}
    save_file(t, str(d / "state.safetensors"))
    (d / "state.json").write_text(json.dumps(doc))


def _legacy_empty_json(d: Path) -> None:
    t, _ = _read(d)
    save_file(t, str(d / "state.safetensors"))
    (d / "state.json").write_text("")


CASES = {
    "wrong-shape tensor": (_wrong_shape, "state.safetensors", "shape"),
    "missing tensor": (_missing_tensor, "state.safetensors", "missing"),
    "missing RNG tensor": (_missing_rng, "state.safetensors", "rng.trainer"),
    "wrong-shape optimiser tensor": (_wrong_optimiser_shape, "state.safetensors", "shape"),
    "missing key": (_without("labels_used"), "state.safetensors", "'labels_used'"),
    "step is a word": (_with("step", "ten"), "state.safetensors", "'step' must be int"),
    "negative step": (_with("step", -3), "state.safetensors", ">= 0"),
    "optimizer not an object": (_with("optimizer", [1, 2]), "state.safetensors", "'optimizer' must be dict"),
    "env RNGs of another batch size": (_with("env_rngs", []), "state.safetensors", "environment RNG"),
    "another agent": (_with("agent", "ppo"), "state.safetensors", "agent 'ppo'"),
    "document does not match its digest": (_digest_mismatch, "state.safetensors", "digest"),
    "truncated": (_truncated, "state.safetensors", "truncated"),
    "empty": (_empty, "state.safetensors", "truncated"),
    "no checkpoint": (_gone, "state.safetensors", "no trainer checkpoint"),
    "old layout, step is a word": (_legacy_step_ten, "state.json", "'step' must be int"),
    "old layout, empty state.json": (_legacy_empty_json, "state.json", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_checkpoint_is_one_line_naming_the_file(case: str, saved: Path, tmp_path: Path) -> None:
    damage, file, message = CASES[case]
    run_dir = tmp_path / "run"
    shutil.copytree(saved, run_dir)
    damage(run_dir)
    trainer = _trainer(run_dir)
    with pytest.raises(CheckpointError) as info:
        trainer.load_state()
    text = str(info.value)
    assert "\n" not in text and message in text and file in text, text
    assert trainer.step == 0  # nothing was restored as if it were fine


def test_a_stale_state_json_is_ignored_and_repaired(saved: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(saved, run_dir)
    (run_dir / "state.json").write_text(json.dumps({**_doc(run_dir), "step": 1}))  # left by an older save
    trainer = _trainer(run_dir)
    trainer.load_state()
    assert trainer.step == 2
    assert json.loads((run_dir / "state.json").read_text()) == _doc(run_dir)


def test_a_checkpoint_of_the_old_layout_still_resumes(saved: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(saved, run_dir)
    tensors, _ = _read(run_dir)
    save_file(tensors, str(run_dir / "state.safetensors"))  # no document inside: state.json is read
    trainer = _trainer(run_dir)
    trainer.load_state()
    reference = _trainer(tmp_path / "ref")
    reference.load_state(saved)
    assert trainer.step == reference.step == 2
    for a, b in zip(trainer.policy.state_dict().values(), reference.policy.state_dict().values()):
        assert torch.equal(a, b)
