"""The label-free baselines as agents: same loop and files as every agent, no reward, no label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hfrl.agents import AGENTS, LABEL_FREE_AGENTS, make_config, make_trainer
from hfrl.checkpoint import load_checkpoint
from hfrl.errors import ConfigError
from hfrl.evaluation import evaluate_on
from hfrl.metrics import psnr


def test_label_free_agents_are_registered_and_need_no_reward() -> None:
    assert set(LABEL_FREE_AGENTS) == {"n2s", "n2s-finetune"} and set(LABEL_FREE_AGENTS) <= set(AGENTS)
    assert not any(AGENTS[name].needs_reward for name in LABEL_FREE_AGENTS)


@pytest.mark.parametrize(("name", "fields"), [("n2s", {"stride": 2}), ("n2s-finetune", {"radius": 1})])
def test_tiny_run_writes_a_generator_that_reloads(
    name: str, fields: dict, tmp_path: Path, tiny: dict
) -> None:
    config = make_config(name, task="digits-white", **{**tiny, "steps": 3}, **fields)
    trainer = make_trainer(name, config, run_dir=tmp_path)
    result = trainer.train()
    final = json.loads((tmp_path / "evaluation.json").read_text())
    assert final["labels_used"] == 0 and result.steps == 3
    assert "losses/blindspot" in result.history[-1]
    assert final["target_good_rate_before"] == pytest.approx(
        0.5244, abs=1e-3
    )  # "before" = the source generator
    generator, doc = load_checkpoint(tmp_path / "generator", kind="generator")
    if name == "n2s":
        assert doc["config"]["family"] == "unet" and doc["config"]["shuffle"] == 2
        low, high = doc["config"]["levels"]
        assert 0.0 < low < high <= 1.0  # levels set from the noisy inputs' outputs, not (0, 1)
    noisy = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(generator.eval()(noisy), trainer.policy.generator.eval()(noisy), atol=1e-6)


def test_bad_settings_are_refused_before_any_work(tiny: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grid must be at least"):
        make_config("n2s", radius=2, grid=4)
    with pytest.raises(ConfigError, match="stride > 1 needs the n2s agent"):
        make_trainer("n2s-finetune", make_config("n2s-finetune", stride=2, **tiny), run_dir=tmp_path)


@pytest.mark.slow
def test_noise2self_learns_to_denoise_white_noise(tmp_path: Path) -> None:
    """300 updates on white noise: output PSNR well above the noisy input's (measured +5.8 dB)."""
    config = make_config(
        "n2s", task="digits-white", steps=300, device="cpu", progress=False, checkpoint_every=0
    )
    trainer = make_trainer("n2s", config, run_dir=tmp_path)
    trainer.train()
    target = trainer.domains.target("val")
    ev = evaluate_on(trainer.policy.generator, target, "target", trainer.noise, trainer.evaluator, seed=3)
    assert float(ev.psnr.mean()) > float(psnr(ev.noisy, ev.clean).mean()) + 3.0
