"""Censored sampling with minimal feedback (Yoon et al. 2023, arXiv 2307.02770), on crossed 7s.

A DDPM trained on MNIST 7s of which a fixed share carry a horizontal stroke through the stem ("crossed
7s") produces crossed 7s at about that rate. Crossed 7s are *malign*, plain 7s *benign*. Censoring keeps
the diffusion model as it is and steers sampling away from malign images with a reward model learned from
a few labels of generated samples.

Pieces, in the order the method uses them:

1. **Data.** :func:`draw_stroke` adds a stroke to a 7 deterministically from a seed;
   :func:`crossed_sevens` builds the DDPM's training mix: 15 % of the 415 embedded 7s written without a
   cross-bar get one (:data:`NATURALLY_CROSSED` lists the 85 left out).
2. **Stand-ins for people.** :class:`MalignLabeler` is the synthetic labeler: a stroke detector (a
   ``cnn`` :class:`~hfrl.classifiers.DigitClassifier` with two classes) trained on generated crossed and
   plain 7s. :class:`MalignEvaluator` is the benchmark's referee, independent of it: other architecture
   (``lenet``), the other half of the 7s, other stroke draws and another seed. Only the evaluator's
   verdicts are reported as malign rates; reward models learn from the labeler's labels only.
3. **Reward models** :class:`CensorReward`: ``r(x) = P(benign | x)`` from a small CNN, either
   *time-independent* (on clean images, applied to the predicted ``x0_hat``) or *time-dependent* (on
   ``x_t`` with the timestep, trained on noised labelled samples). :class:`ProductEnsemble` combines
   several as a product of probabilities (a sum of log-probabilities), as in the paper.
   :func:`train_censor_reward` fits one with the paper's weighted BCE and augmentation.
4. **Guidance** (:class:`GuidanceConfig`, :func:`censored_sample`), each term with its weight:

   * *classifier guidance* on ``x_t`` (Dhariwal & Nichol 2021, in DDIM form):
     ``eps <- eps - w * sqrt(1 - abar_t) * grad_{x_t} log r(x_t, t)`` with a time-dependent reward;
   * *forward (universal) guidance* on the predicted clean image (Bansal et al. 2023, arXiv 2302.07121):
     ``eps <- eps - w * sqrt(1 - abar_t) * grad_{x_t} log r(x0_hat(x_t))``, back-propagating through the
     noise predictor;
   * *backward guidance* (Bansal et al.): ``m`` Adam steps on ``delta`` to raise ``log r(x0_hat + delta)``,
     then ``eps <- eps - sqrt(abar_t / (1 - abar_t)) * delta``;
   * *recurrence* (Bansal et al.; Yoon et al.'s ``R``): after each guided step, re-noise ``x_prev`` back
     to ``x_t`` and repeat the step, ``R`` times in all.

Label mapping through the feedback store (kind ``single``): ``good`` = benign, ``bad`` = malign
(``hfrl.feedback.labels.rating_value``: good -> 1.0 = benign, the reward's positive class).
"""

from __future__ import annotations

from hfrl.censoring.data import (
    BENIGN,
    CROSSED_FRACTION,
    CROSSED_SEED,
    DETECTOR_KIND,
    EVALUATOR_CHECKPOINT,
    LABELER_CHECKPOINT,
    MALIGN,
    NATURALLY_CROSSED,
    REWARD_KIND,
    SEVEN,
    CrossedSevens,
    StrokeParams,
    crossed_sevens,
    detector_training_set,
    draw_stroke,
    sevens,
    sevens_half,
)
from hfrl.censoring.guidance import (
    GuidanceConfig,
    censored_sample,
    guided_noise,
)
from hfrl.censoring.judges import (
    EVALUATOR_RECIPE,
    LABELER_RECIPE,
    DetectorRecipe,
    MalignEvaluator,
    MalignLabeler,
    StrokeJudge,
    build_stroke_detector,
    train_stroke_detector,
)
from hfrl.censoring.labels import (
    CensorLabels,
    LabelBudget,
    collect_labels,
    label_directly,
)
from hfrl.censoring.measure import (
    SEVEN_PROB_THRESHOLD,
    CensorReport,
    measure,
    timed,
)
from hfrl.censoring.reward import (
    CensorReward,
    CensorRewardConfig,
    ProductEnsemble,
    RewardLike,
    RewardTrainConfig,
    build_censor_reward,
    load_censor_reward,
    random_affine,
    save_censor_reward,
    train_censor_reward,
)
from hfrl.censoring.setups import (
    REWARD_SETUPS,
    ensemble_subsets,
    train_reward_setup,
)

__all__ = [
    "BENIGN",
    "CROSSED_FRACTION",
    "CROSSED_SEED",
    "CensorLabels",
    "CensorReport",
    "CensorReward",
    "CensorRewardConfig",
    "CrossedSevens",
    "DETECTOR_KIND",
    "DetectorRecipe",
    "EVALUATOR_CHECKPOINT",
    "EVALUATOR_RECIPE",
    "GuidanceConfig",
    "LABELER_CHECKPOINT",
    "LABELER_RECIPE",
    "LabelBudget",
    "MALIGN",
    "MalignEvaluator",
    "MalignLabeler",
    "NATURALLY_CROSSED",
    "ProductEnsemble",
    "REWARD_KIND",
    "REWARD_SETUPS",
    "RewardLike",
    "RewardTrainConfig",
    "SEVEN",
    "SEVEN_PROB_THRESHOLD",
    "StrokeJudge",
    "StrokeParams",
    "build_censor_reward",
    "build_stroke_detector",
    "censored_sample",
    "collect_labels",
    "crossed_sevens",
    "detector_training_set",
    "draw_stroke",
    "ensemble_subsets",
    "guided_noise",
    "label_directly",
    "load_censor_reward",
    "measure",
    "random_affine",
    "save_censor_reward",
    "sevens",
    "sevens_half",
    "timed",
    "train_censor_reward",
    "train_reward_setup",
    "train_stroke_detector",
]
