"""The online diffusion methods' old home, kept so that existing imports keep working.

The trainer base, its configuration and the methods now live in :mod:`hfrl.agents.diffusion` (one module
each), the task's labeler and evaluator in :mod:`hfrl.diffusion_task`, the CSV writer in
:mod:`hfrl.runs`.
"""

from hfrl.agents.diffusion import (
    BASELINES,
    BinaryRewardMixin,
    D3POConfig,
    D3POTrainer,
    DDPOConfig,
    DDPOTrainer,
    LabelPool,
    LearnedRewardPPOConfig,
    OnlineDiffusionConfig,
    OnlineDiffusionTrainer,
    OnlineResult,
    RWLDiffusionConfig,
    RWLDiffusionTrainer,
    Trajectories,
    concat_trajectories,
    normalised,
)
from hfrl.diffusion_task import (
    DEFAULT_TARGET_CLASS,
    SOURCE_ERROR_DIGITS,
    TargetDigitEvaluator,
    TargetDigitLabeler,
    TargetReport,
    spread,
)
from hfrl.runs import write_rows

__all__ = [
    "BASELINES",
    "BinaryRewardMixin",
    "D3POConfig",
    "D3POTrainer",
    "DDPOConfig",
    "DDPOTrainer",
    "DEFAULT_TARGET_CLASS",
    "LabelPool",
    "LearnedRewardPPOConfig",
    "OnlineDiffusionConfig",
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "RWLDiffusionConfig",
    "RWLDiffusionTrainer",
    "SOURCE_ERROR_DIGITS",
    "TargetDigitEvaluator",
    "TargetDigitLabeler",
    "TargetReport",
    "Trajectories",
    "concat_trajectories",
    "normalised",
    "spread",
    "write_rows",
]
