"""HERO's feedback-aligned representation as a reward model (Hiranaka et al., arXiv 2410.05116).

An encoder maps a (noisy input, output) pair to a unit vector. It is trained with a triplet loss on
cosine distance — anchor = the output a labeler marked best, positive = one marked good, negative = one
marked bad (:func:`hfrl.rewards.objectives.triplet_cosine_loss`) — so that directions in the embedding
space mean "like the best" and "like the bad ones". The reward of a new output is its cosine similarity
to reference embeddings (the best samples, or all good ones), rescaled from ``[-1, 1]`` to ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.errors import DataError
from hfrl.rewards.features import PairFeatures
from hfrl.rewards.models import (
    ConvTrunk,
    RewardModel,
    RewardModelConfig,
    check_denoiser_inputs,
    frozen_denoiser,
)

_EPS = 1e-4


class EmbeddingReward(RewardModel):
    """Reward = ``(1 + cos(embed(noisy, output), reference)) / 2`` in ``[0, 1]``.

    Args:
        config: Architecture with ``arch="embedding"``; ``num_references`` fixes the size of the stored
            reference buffer ``(num_references, embed_dim)`` so that checkpoints round-trip.

    Until :meth:`set_references` is called the references are zero and every reward is 0.5.
    """

    def __init__(self, config: RewardModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or RewardModelConfig(arch="embedding")
        check_denoiser_inputs(self.config)
        self.denoiser = frozen_denoiser(self.config)
        self.features = PairFeatures(self.config.inputs, self.config.residual_sigma)
        self.trunk = ConvTrunk(len(self.config.inputs) * self.config.channels, self.config)
        self.project = nn.Linear(self.config.hidden, self.config.embed_dim)
        self.register_buffer("references", torch.zeros(self.config.num_references, self.config.embed_dim))

    @property
    def uses_noisy(self) -> bool:  # noqa: D102
        return self.denoiser is not None or self.features.uses_noisy

    def embed(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unit embeddings ``(B, embed_dim)`` of ``(B, C, H, W)`` pairs (``denoised``: see :meth:`logits`)."""
        if self.denoiser is not None and denoised is None:
            denoised = self.denoise(noisy)
        return F.normalize(self.project(self.trunk(self.features(noisy, output, denoised))), dim=1)

    def similarity(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Cosine similarity ``(B,)`` in ``[-1, 1]`` to the references (closest one, or their mean)."""
        e = self.embed(noisy, output, denoised)  # (B, D)
        if self.config.reference_reduce == "mean":
            ref = F.normalize(self.references.mean(0, keepdim=True), dim=1)  # (1, D)
            return (e @ ref.T).squeeze(1)
        return (e @ self.references.T).max(dim=1).values  # (B,)

    def logits(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``logit((1 + cos) / 2)``, so that ``forward`` is HERO's rescaled similarity.

        The similarity is squeezed affinely into ``[eps, 1 - eps]`` rather than clamped, so that the
        logit stays finite without cutting the gradient at ``cos = +-1``.
        """
        p = _EPS + (1.0 - 2.0 * _EPS) * (1.0 + self.similarity(noisy, output, denoised)) / 2.0
        return torch.logit(p)

    @torch.no_grad()
    def set_references(self, noisy: torch.Tensor, output: torch.Tensor) -> None:
        """Embed reference pairs ``(M, C, H, W)`` and store them (resizing the buffer and the config).

        Args:
            noisy: Noisy inputs of the reference samples (the best ones, or all good ones).
            output: Their outputs.

        Raises:
            DataError: for an empty reference set.
        """
        if noisy.shape[0] == 0:
            raise DataError("HERO embedding reward: no reference samples (no output was marked best or good)")
        was_training = self.training
        self.eval()
        device = self.device
        refs = torch.cat(
            [self.embed(x.to(device), o.to(device)) for x, o in zip(noisy.split(512), output.split(512))]
        )
        self.train(was_training)
        self.references = refs  # re-registers the buffer with its new size
        self.config = replace(self.config, num_references=int(refs.shape[0]))
