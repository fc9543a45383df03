"""DiffusionNFT (``nft``): negative-aware fine-tuning on the forward process, no likelihoods.

Zheng et al. 2025, arXiv 2509.16117. The model trains on finished samples with its own matching loss
(:func:`~hfrl.diffusion.matching_loss`; the DDPM's is epsilon matching) instead of the
sampler's per-step likelihoods. Two *implicit policies* share the trained network ``v_theta`` and the
sampling policy ``v_old`` (the model that drew the round's samples, frozen):

    v+ = (1 - beta) v_old + beta v_theta          (positive)
    v- = (1 + beta) v_old - beta v_theta          (negative: v_old mirrored about v+)

and each sample ``x0`` with optimality probability ``r in [0, 1]`` is matched by both, at a random time:

    L = r ||v+(x_t, t) - target||^2 / beta + (1 - r) ||v-(x_t, t) - target||^2 / beta

(the paper's code divides by ``beta`` so the gradient's scale does not shrink with it). At ``v_theta =
v_old`` the gradient is ``2 (2 r - 1) (v_old - target)``: a good sample (``r > 1/2``) is matched more closely,
a bad one less, and a sample at ``r = 1/2`` does not move the model. The paper shows the optimum is
``v_theta = v_old + (2 / beta) Delta``, the policy-improvement direction between the good and bad samples'
models.

``r`` comes from either

* ``reward="labels"`` (the binary mode): a good mark is ``r = 1``, a bad one ``r = 0`` (skips are left
  out), no reward model; or
* ``reward="model"``: the paper's ``r = clip(A / adv_clip_max, -1, 1) / 2 + 1/2`` from advantages ``A`` that
  normalise the reward model's scores over the round's batch (the labelled samples plus
  ``extra_samples`` unlabelled ones); the reward model is learned from every good/bad label so far.

For the epsilon-prediction DDPM the predictions are noise estimates (``v <-> epsilon``) and the target is
the noise; a flow model's velocity plugs in through :func:`~hfrl.diffusion.matching_input`.
With ``kl > 0`` the paper's regulariser ``kl * ||v_theta - v_ref||^2`` to the base model is added. The
paper's soft update of ``v_old`` is used at its ``eta = 0``: ``v_old`` is the model that sampled the round.
The paper's adaptive (x0-space) loss weighting is for flow models and left out: the DDPM's epsilon loss is
the one it was pre-trained with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from hfrl.agents.diffusion.binary_reward import BinaryRewardMixin
from hfrl.agents.diffusion.config import OnlineDiffusionConfig
from hfrl.agents.diffusion.ppo import normalised
from hfrl.agents.diffusion.trainer import OnlineDiffusionTrainer, Trajectories, mean_or_nan
from hfrl.diffusion import matching_input, random_timesteps, to_model_space
from hfrl.errors import ConfigError
from hfrl.feedback import BAD, GOOD, SINGLE


def nft_loss(
    pred: torch.Tensor, old: torch.Tensor, target: torch.Tensor, r: torch.Tensor, beta: float
) -> torch.Tensor:
    """``(B,)`` DiffusionNFT's loss from the predictions at one noised input.

    Args:
        pred: ``(B, C, H, W)`` ``v_theta``, the trained model's output.
        old: ``(B, C, H, W)`` ``v_old``, the sampling policy's (no gradient).
        target: ``(B, C, H, W)`` what the output is matched to (the DDPM: the noise).
        r: ``(B,)`` optimality probabilities in ``[0, 1]``.
        beta: The implicit policies' mixing weight, > 0.
    """
    old = old.detach()
    positive = (1 - beta) * old + beta * pred
    negative = (1 + beta) * old - beta * pred
    pos = ((positive - target) ** 2).flatten(1).mean(1)
    neg = ((negative - target) ** 2).flatten(1).mean(1)
    return (r * pos + (1 - r) * neg) / beta


def optimality(advantages: torch.Tensor, clip: float) -> torch.Tensor:
    """The paper's ``r = clip(A / clip, -1, 1) / 2 + 1/2`` in ``[0, 1]``."""
    return (advantages / clip).clamp(-1.0, 1.0) / 2 + 0.5


@dataclass
class NFTConfig(OnlineDiffusionConfig):
    """DiffusionNFT: positive/negative implicit policies trained with the model's matching loss."""

    reward: str = "labels"
    """``labels``: good = ``r`` 1, bad = 0, no reward model (the binary mode); ``model``: ``r`` from the
    normalised scores of a reward model learned from the labels (the paper's ``adv_clip_max`` mapping)."""
    beta: float = 1.0
    """Mixing weight of the implicit policies (the paper's ``beta``; 1: ``v+ = v_theta``, ``v- = 2 v_old - v_theta``)."""
    adv_clip_max: float = 5.0
    """``reward="model"``: advantages are clipped to ``[-adv_clip_max, adv_clip_max]`` and mapped to ``[0, 1]``."""
    extra_samples: int = 0
    """``reward="model"``: unlabelled samples per round, scored by the reward model alone and trained on."""
    nft_steps: int = 16
    """Gradient steps per round on the round's samples."""
    nft_batch_size: int = 32
    """Samples (each noised at one random time) per gradient step."""
    lr: float = 1e-4
    """AdamW learning rate."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in ("labels", "model"):
            raise ConfigError(f"reward must be 'labels' or 'model', got {self.reward!r}")
        if not self.beta > 0 or not self.adv_clip_max > 0:
            raise ConfigError(f"beta and adv_clip_max must be > 0, got {self.beta}, {self.adv_clip_max}")
        if self.extra_samples < 0 or self.nft_steps < 1 or self.nft_batch_size < 1:
            raise ConfigError("extra_samples must be >= 0, nft_steps and nft_batch_size >= 1")
        if self.extra_samples and self.reward != "model":
            raise ConfigError("extra_samples needs reward='model' (unlabelled samples have no label)")


class NFTTrainer(BinaryRewardMixin, OnlineDiffusionTrainer):
    """DiffusionNFT (arXiv 2509.16117) on good/bad labels: trains on finished samples, no per-step likelihoods."""

    name = "nft"
    feedback_kind = SINGLE
    config_class = NFTConfig
    config: NFTConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_reward()

    def optimality(self, traj: Trajectories, words: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (M, C, H, W) in [0, 1], r (M,))``: the samples trained on and their optimality.

        ``reward="labels"``: the answered samples, ``r`` 1 for good and 0 for bad. ``reward="model"``: the
        round's samples plus ``extra_samples`` more, ``r`` from the reward model (empty until it is trained).
        """
        cfg = self.config
        if cfg.reward == "labels":
            keep = [i for i, w in enumerate(words) if w in (GOOD, BAD)]
            r = torch.tensor([1.0 if words[i] == GOOD else 0.0 for i in keep])
            return traj.images[keep], r
        if not self.reward_ready:
            return traj.images[:0], torch.zeros(0)
        images = traj.images
        if cfg.extra_samples:
            images = torch.cat([images, self.rollout(self.initial_noise(cfg.extra_samples)).images])
        scores = self.reward(images).float().cpu()
        return images, optimality(normalised(scores), cfg.adv_clip_max)

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        metrics: dict[str, float] = {}
        if cfg.reward == "model":
            self.pool.add(traj.images, feedback.labels)
            metrics |= self._train_reward(self.round)
        images, r = self.optimality(traj, feedback.labels)
        if images.shape[0] == 0 or not bool((r != 0.5).any()):
            return metrics | {"losses/nft": float("nan"), "charts/nft_samples": float(images.shape[0])}
        x0 = to_model_space(images.to(self.device))
        r = r.to(self.device)
        old = copy.deepcopy(self.model).eval().requires_grad_(False)  # v_old: the policy that sampled
        losses, kls = [], []
        for _ in range(cfg.nft_steps):
            idx = torch.randint(0, x0.shape[0], (min(cfg.nft_batch_size, x0.shape[0]),), generator=self.rng)
            t = random_timesteps(self.model, idx.numel(), self.rng)
            noise = torch.randn((idx.numel(), *x0.shape[1:]), generator=self.rng).to(self.device)

            def loss_fn(
                idx: torch.Tensor = idx, t: torch.Tensor = t, noise: torch.Tensor = noise
            ) -> torch.Tensor:
                x_t, target = matching_input(self.model, x0[idx.to(self.device)], t, noise)
                tt = t.to(self.device)
                with torch.no_grad():
                    v_old = old(x_t, tt)
                pred = self.model(x_t, tt)
                loss = nft_loss(pred, v_old, target, r[idx.to(self.device)], cfg.beta).mean()
                losses.append(float(loss.detach()))
                if cfg.kl > 0:
                    kl = ((pred - self.reference_output(x_t, tt)) ** 2).flatten(1).mean(1).mean()
                    kls.append(float(kl.detach()))
                    loss = loss + cfg.kl * kl
                loss.backward()
                return loss

            self.optimize(loss_fn)
        out = metrics | {
            "losses/nft": mean_or_nan(losses),
            "charts/nft_samples": float(x0.shape[0]),
            "charts/nft_r_mean": float(r.mean()),
        }
        if kls:
            out["charts/kl_ref"] = mean_or_nan(kls)
        return out


__all__ = ["NFTConfig", "NFTTrainer", "nft_loss", "optimality"]
