"""The old module of the online diffusion methods keeps its public names (users' imports)."""

from __future__ import annotations

import hfrl.agents.diffusion as package
import hfrl.agents.diffusion_agents as old
import hfrl.diffusion_task as task
import hfrl.runs as runs


def test_the_old_module_re_exports_the_same_objects() -> None:
    names = {
        "BASELINES", "D3POConfig", "D3POTrainer", "DDPOConfig", "DDPOTrainer", "LabelPool",
        "LearnedRewardPPOConfig", "OnlineDiffusionConfig", "OnlineDiffusionTrainer", "OnlineResult",
        "RWLDiffusionConfig", "RWLDiffusionTrainer", "TargetDigitEvaluator", "TargetDigitLabeler",
        "TargetReport", "Trajectories", "concat_trajectories", "normalised", "spread", "write_rows",
        "BinaryRewardMixin", "DEFAULT_TARGET_CLASS", "SOURCE_ERROR_DIGITS",
    }  # fmt: skip
    assert names <= set(old.__all__)
    for name in names:
        home = next(m for m in (package, task, runs) if hasattr(m, name))
        assert getattr(old, name) is getattr(home, name), name
