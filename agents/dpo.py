"""A preference baseline with no reward model: DPO on pairs of outputs for the same input (D3PO-style).

Direct Preference Optimisation (Rafailov et al. 2023) fits the policy to pairwise preferences with the
reference policy as the implicit reward's anchor; D3PO (Yang et al. 2024) applies it to diffusion models
with human comparisons. Here each update shows ``batch_size`` noisy inputs, samples two outputs for each,
asks a :class:`~hfrl.agents.preferences.PreferenceSource` which is better (one label per pair; ties are
dropped), and minimises::

    -log sigmoid(beta * [(log pi(a_w|x) - log pi_ref(a_w|x)) - (log pi(a_l|x) - log pi_ref(a_l|x))])

It is the feedback-efficiency baseline: every pair costs one label, and there is no reward model to
generalise from one label to other inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hfrl.agents.base import Trainer
from hfrl.agents.config import DPOConfig
from hfrl.agents.preferences import PreferenceSource, SyntheticPreferences
from hfrl.data import dataset_name
from hfrl.judges import make_labeler


class DPOTrainer(Trainer):
    """DPO from pairwise labels; counts one label per pair asked."""

    name = "dpo"
    config_class = DPOConfig
    config: DPOConfig
    needs_reward = False

    def __init__(self, *args: Any, preferences: PreferenceSource | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if preferences is None:
            shape = self.domains.target("train").image_shape
            labeler = make_labeler(dataset_name(self.config.dataset), self.config.labeler, shape)
            preferences = SyntheticPreferences(labeler)
        self.preferences = preferences

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        episodes = self.env.episodes
        with torch.no_grad():
            left = self.policy.sample(noisy, generator=self.rng)
            right = self.policy.sample(noisy, generator=self.rng)
        pref = self.preferences(episodes, left, right)  # (N,) 1: left better, 0: right, 0.5: tie
        self.labels_used += int(pref.numel())
        decided = pref != 0.5
        metrics: dict[str, float] = {"charts/decided_pairs": float(decided.sum())}
        reg, reg_metrics = self.regularizers(noisy)
        if bool(decided.any()):
            x = noisy[decided]
            left_better = pref[decided] > 0.5
            win = torch.where(left_better[:, None, None, None], left[decided], right[decided])
            lose = torch.where(left_better[:, None, None, None], right[decided], left[decided])
            logit = self.config.beta * (
                (self.policy.log_prob(x, win) - self.reference.log_prob(x, win))
                - (self.policy.log_prob(x, lose) - self.reference.log_prob(x, lose))
            )
            dpo_loss = -F.logsigmoid(logit).mean()
            metrics["charts/preference_accuracy"] = float((logit > 0).float().mean())
        else:
            dpo_loss = torch.zeros((), device=noisy.device)
            metrics["charts/preference_accuracy"] = float("nan")
        grad_norm = self.optimize(dpo_loss + reg, "DPO loss")
        return {"losses/dpo": dpo_loss.item(), **reg_metrics, **metrics, "charts/grad_norm": grad_norm}
