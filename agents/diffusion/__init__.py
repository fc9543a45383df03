"""Online fine-tuning of a diffusion model from human feedback: one loop, four methods.

The task (HERO, Hiranaka et al. 2024, arXiv 2410.05116, on digits): the shipped DDPM ``ddpm_digits`` draws
all ten digits; a person wants *only digit k*, which it draws about one time in ten. Every round the
trainer samples a batch, asks for feedback through the :class:`~hfrl.feedback.FeedbackQueue` (people on
the labelling page, or :class:`~hfrl.diffusion_task.TargetDigitLabeler` answering headless through the
same store calls), and updates the model. Success is judged by
:class:`~hfrl.diffusion_task.TargetDigitEvaluator`, whose classifier is independent of the labeler's.

:class:`~hfrl.agents.diffusion.trainer.OnlineDiffusionTrainer` owns the loop (:mod:`.trainer`, its
settings in :mod:`.config`), and each method writes what it asks and how it updates, one module each:

=========== ============ ==========================================================================
method      feedback     update
=========== ============ ==========================================================================
``hero``    good + best  PPO on similarity to the best in a triplet-trained embedding; noise recycling
                         (:mod:`hfrl.agents.hero`)
``rwl``     good/bad     reward-weighted denoising loss + ``beta`` x pre-training loss (Lee et al. 2023;
                         :mod:`.rwl`)
``ddpo``    good/bad     PPO (DDPO, Black et al. 2023) on a reward model, KL to the base model (DPOK;
                         :mod:`.ddpo`, its PPO in :mod:`.ppo`, its reward model in :mod:`.binary_reward`)
``d3po``    pairs        DPO on the reverse-chain steps of preferred / rejected samples (D3PO, Yang et
                         al. 2024, arXiv 2311.13231), no reward model (:mod:`.d3po`)
=========== ============ ==========================================================================

Every label counts once: a good/bad mark (``hero``, ``rwl``, ``ddpo``; HERO's best mark comes free with
them) or a pair comparison (``d3po``), so "labels used" is the same human effort across methods.
"""

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin, LabelPool
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.d3po import D3POConfig, D3POTrainer
from hfrl.agents.diffusion.ddpo import DDPOConfig, DDPOTrainer
from hfrl.agents.diffusion.ppo import LearnedRewardPPOConfig, LearnedRewardPPOTrainer, normalised
from hfrl.agents.diffusion.rwl import RWLDiffusionConfig, RWLDiffusionTrainer
from hfrl.agents.diffusion.trainer import (
    OnlineDiffusionTrainer,
    OnlineResult,
    Trajectories,
    concat_trajectories,
    save_feedback_grid,
)

BASELINES: dict[str, type[OnlineDiffusionTrainer]] = {
    RWLDiffusionTrainer.name: RWLDiffusionTrainer,
    DDPOTrainer.name: DDPOTrainer,
    D3POTrainer.name: D3POTrainer,
}
"""The baselines by method name (:data:`hfrl.agents.hero.METHODS` adds ``hero``)."""

__all__ = [
    "BASELINES",
    "BinaryRewardMixin",
    "D3POConfig",
    "D3POTrainer",
    "DDPOConfig",
    "DDPOTrainer",
    "LabelPool",
    "LearnedRewardPPOConfig",
    "LearnedRewardPPOTrainer",
    "OnlineDiffusionConfig",
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "RWLDiffusionConfig",
    "RWLDiffusionTrainer",
    "Trajectories",
    "concat_trajectories",
    "normalised",
    "save_feedback_grid",
]
