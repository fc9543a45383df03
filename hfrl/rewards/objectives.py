"""Training objectives for reward models; each takes logits or embeddings and returns a scalar loss.

* :func:`binary_loss`: good/bad labels, binary cross-entropy with class weights and label smoothing.
* :func:`bradley_terry_loss`: pairwise preferences (Bradley & Terry 1952; Christiano et al. 2017).
* :func:`triplet_cosine_loss`: HERO's feedback-aligned embedding (arXiv 2410.05116).
* :func:`pairing_loss`: the auxiliary task after Lee et al. (arXiv 2302.12192): tell an output's true
  noisy input from other or perturbed inputs, using the reward model's own scores as class logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_weights(labels: torch.Tensor) -> tuple[float, float]:
    """``(w_good, w_bad)`` that give both classes equal total weight.

    Yoon et al. (arXiv 2307.02770) weight the rare class up; here ``w_c = N / (2 N_c)``; soft labels count fractionally. With a single class both weights are 1.

    Args:
        labels: ``(N,)`` targets in ``[0, 1]``.
    """
    n = float(labels.numel())
    good = float(labels.sum())
    bad = n - good
    if good <= 0 or bad <= 0:
        return 1.0, 1.0
    return n / (2.0 * good), n / (2.0 * bad)


def binary_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: tuple[float, float] = (1.0, 1.0),
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Weighted binary cross-entropy on good (1) / bad (0) labels.

    Args:
        logits: ``(B,)`` scores in logit units.
        labels: ``(B,)`` targets in ``[0, 1]`` (0.5 for ties).
        weights: ``(w_good, w_bad)``, e.g. from :func:`class_weights`; a soft label mixes them.
        label_smoothing: ``eps`` in ``[0, 0.5)``: targets move to ``y (1 - eps) + eps / 2``, which keeps a
            few hundred labels (some of them wrong) from driving the logits to infinity.

    Returns:
        The mean loss, a scalar.
    """
    target = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
    w = labels * weights[0] + (1.0 - labels) * weights[1]
    return (w * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).mean()


def bradley_terry_loss(
    left: torch.Tensor, right: torch.Tensor, preference: torch.Tensor, *, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Bradley–Terry: ``P(left > right) = sigmoid(r_left - r_right)``, fitted by cross-entropy.

    Args:
        left: ``(B,)`` logits of the left outputs.
        right: ``(B,)`` logits of the right outputs.
        preference: ``(B,)`` 1 left better, 0 right better, 0.5 tie.
        label_smoothing: As in :func:`binary_loss`.
    """
    target = preference * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(left - right, target)


def triplet_cosine_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, margin: float = 0.5
) -> torch.Tensor:
    """HERO's triplet loss on cosine distance ``d = 1 - cos``: ``max(0, d(a, p) - d(a, n) + margin)``.

    Args:
        anchor: ``(B, D)`` embeddings of best outputs.
        positive: ``(B, D)`` embeddings of good outputs.
        negative: ``(B, D)`` embeddings of bad outputs.
        margin: How much closer the positive must be than the negative (cosine distance lies in
            ``[0, 2]``).
    """
    d_pos = 1.0 - F.cosine_similarity(anchor, positive, dim=1)
    d_neg = 1.0 - F.cosine_similarity(anchor, negative, dim=1)
    return F.relu(d_pos - d_neg + margin).mean()


def pairing_loss(candidate_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy that the true input (column 0) scores highest among an output's candidate inputs.

    Lee et al. (arXiv 2302.12192) make a text-to-image reward model sensitive to its prompt by asking it
    to pick an image's true prompt among perturbed ones, with the reward scores as logits. Here the
    "prompt" is the noisy input: the reward of ``(x_true, output)`` must beat ``(x_other, output)``.

    Args:
        candidate_logits: ``(B, 1 + K)``: the reward logits of the output with its true input first, then
            with ``K`` other or perturbed inputs.
    """
    target = torch.zeros(candidate_logits.shape[0], dtype=torch.long, device=candidate_logits.device)
    return F.cross_entropy(candidate_logits, target)
