import json
from pathlib import Path

import pytest
import torch

from hfrl.checkpoint import checkpoint_paths, load_checkpoint, read_checkpoint_config, save_checkpoint
from hfrl.errors import CheckpointError
from hfrl.generators import GeneratorConfig, build_generator


def _save(tmp_path: Path, **cfg) -> tuple[Path, torch.nn.Module]:
    config = GeneratorConfig(width=8, bottleneck=16, **cfg)
    model = build_generator(config)
    path = save_checkpoint(tmp_path / "gen", model, "generator", config.to_dict(), {"note": "test"})
    return path, model


def test_round_trip(tmp_path: Path) -> None:
    path, model = _save(tmp_path)
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    for form in (tmp_path / "gen", path, path.with_suffix(".json")):
        loaded, doc = load_checkpoint(form, kind="generator")
        assert doc["metadata"] == {"note": "test"}
        x = torch.rand(2, 1, 28, 28)
        assert torch.equal(loaded(x), model.eval()(x))


def test_directory_form(tmp_path: Path) -> None:
    model = build_generator(GeneratorConfig(width=8))
    save_checkpoint(tmp_path / "model", model, "generator", model.config.to_dict())
    assert checkpoint_paths(tmp_path)[0] == tmp_path / "model.safetensors"
    load_checkpoint(tmp_path, kind="generator")


def test_truncated_weights(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"gen\.safetensors: corrupt or truncated"):
        load_checkpoint(path, kind="generator")


def test_garbage_weights(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    path.write_bytes(b"\x80\x04not a safetensors file, maybe a pickle")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_corrupt_json(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"gen\.json: not valid JSON"):
        load_checkpoint(path)


def test_wrong_kind_and_unknown_kind(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    with pytest.raises(CheckpointError, match="is a 'generator' checkpoint, expected 'classifier'"):
        load_checkpoint(path, kind="classifier")
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["kind"] = "spaceship"
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unknown checkpoint kind"):
        read_checkpoint_config(path)


def test_newer_format(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["format_version"] = 99
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="newer than this hfrl supports"):
        load_checkpoint(path)


def test_mismatched_config(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["config"]["width"] = 16
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="has shape .* in the file but .* in the model"):
        load_checkpoint(path)
    doc["config"]["width"] = 8
    doc["config"]["skip_channels"] = 0
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_checkpoint(path)
    doc["config"]["family"] = "nonsense"
    path.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="config does not describe a valid generator"):
        load_checkpoint(path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    path, _ = _save(tmp_path)
    path.unlink()
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(tmp_path / "gen")


def test_shipped_checkpoints_load() -> None:
    from hfrl.judges import asset_path

    for name, kind in [
        ("denoiser_source", "generator"),
        ("labeler_classifier", "classifier"),
        ("evaluator_classifier", "classifier"),
    ]:
        model, doc = load_checkpoint(asset_path(name), kind=kind)
        assert not model.training
        assert doc["kind"] == kind
