"""Online fine-tuning of a diffusion model from human feedback: one loop, eight methods.

The task (HERO, Hiranaka et al. 2024, arXiv 2410.05116, on digits): the shipped DDPM ``ddpm_digits`` draws
all ten digits; a person wants *only digit k*, which it draws about one time in ten. Every round the
trainer samples a batch, asks for feedback through the :class:`~hfrl.feedback.FeedbackQueue` (people on
the labelling page, or :class:`~hfrl.diffusion_task.TargetDigitLabeler` answering headless through the
same store calls), and updates the model. Success is judged by
:class:`~hfrl.diffusion_task.TargetDigitEvaluator`, whose classifier is independent of the labeler's.

:class:`~hfrl.agents.diffusion.trainer.OnlineDiffusionTrainer` owns the loop (:mod:`.trainer`, its
settings in :mod:`.config`), and each method writes what it asks and how it updates, one module each:

=============== ============ ===============================================================================
method          feedback     update
=============== ============ ===============================================================================
``hero``        good + best  PPO on similarity to the best in a triplet-trained embedding; noise recycling
                             (:mod:`hfrl.agents.hero`)
``rwl``         good/bad     reward-weighted denoising loss + ``beta`` x pre-training loss (Lee et al. 2023;
                             :mod:`.rwl`)
``ddpo``        good/bad     PPO (DDPO, Black et al. 2023) on a reward model, KL to the base model (DPOK;
                             :mod:`.ddpo`, its PPO in :mod:`.ppo`, its reward model in :mod:`.binary_reward`)
``d3po``        pairs        DPO on the reverse-chain steps of preferred / rejected samples (D3PO, Yang et
                             al. 2024, arXiv 2311.13231), no reward model (:mod:`.d3po`)
``flow-grpo``   good/bad     PPO-clip on groups of chains from one initial noise, group-relative
                             advantages of a reward model, per-step KL (Flow-GRPO, arXiv 2505.05470;
                             :mod:`.flow_grpo`)
``nft``         good/bad     positive / negative implicit policies trained with the model's own matching
                             loss on finished samples, no likelihoods (DiffusionNFT, arXiv 2509.16117;
                             :mod:`.nft`, the loss per model kind in :func:`hfrl.diffusion.matching_loss`)
``awm``         good/bad     the matching loss weighted by a reward model's advantages, KL to the base
                             (Advantage Weighted Matching, arXiv 2509.25050; :mod:`.awm`)
``best-of-n``   good/bad     no fine-tuning: sample N, keep the learned reward's best, or steer N
                             particles by it on the way (Feynman-Kac steering; :mod:`.best_of_n`,
                             :mod:`.fk_steering`)
=============== ============ ===============================================================================

Every label counts once: a good/bad mark (every method but ``d3po``; HERO's best mark comes free with
them) or a pair comparison (``d3po``), so "labels used" is the same human effort across methods.
"""

from hfrl.agents.diffusion.awm import AWMConfig, AWMTrainer
from hfrl.agents.diffusion.best_of_n import BestOfNConfig, BestOfNTrainer
from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin, LabelPool
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.d3po import D3POConfig, D3POTrainer
from hfrl.agents.diffusion.ddpo import DDPOConfig, DDPOTrainer
from hfrl.agents.diffusion.flow_grpo import FlowGRPOConfig, FlowGRPOTrainer
from hfrl.agents.diffusion.nft import NFTConfig, NFTTrainer
from hfrl.agents.diffusion.ppo import LearnedRewardPPOConfig, LearnedRewardPPOTrainer, normalised
from hfrl.agents.diffusion.rwl import RWLDiffusionConfig, RWLDiffusionTrainer
from hfrl.agents.diffusion.trainer import (
    OnlineDiffusionTrainer,
    OnlineResult,
    Trajectories,
    concat_trajectories,
    save_feedback_grid,
)
from hfrl.diffusion import matching_loss

BASELINES: dict[str, type[OnlineDiffusionTrainer]] = {
    RWLDiffusionTrainer.name: RWLDiffusionTrainer,
    DDPOTrainer.name: DDPOTrainer,
    D3POTrainer.name: D3POTrainer,
    FlowGRPOTrainer.name: FlowGRPOTrainer,
    NFTTrainer.name: NFTTrainer,
    AWMTrainer.name: AWMTrainer,
    BestOfNTrainer.name: BestOfNTrainer,
}
"""The baselines by method name (:data:`hfrl.agents.hero.METHODS` adds ``hero``)."""

__all__ = [
    "AWMConfig",
    "AWMTrainer",
    "BASELINES",
    "BestOfNConfig",
    "BestOfNTrainer",
    "BinaryRewardMixin",
    "D3POConfig",
    "D3POTrainer",
    "DDPOConfig",
    "DDPOTrainer",
    "FlowGRPOConfig",
    "FlowGRPOTrainer",
    "LabelPool",
    "LearnedRewardPPOConfig",
    "LearnedRewardPPOTrainer",
    "NFTConfig",
    "NFTTrainer",
    "OnlineDiffusionConfig",
    "OnlineDiffusionTrainer",
    "OnlineResult",
    "RWLDiffusionConfig",
    "RWLDiffusionTrainer",
    "Trajectories",
    "concat_trajectories",
    "matching_loss",
    "normalised",
    "save_feedback_grid",
]
