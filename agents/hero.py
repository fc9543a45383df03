"""HERO: human-feedback efficient online fine-tuning of a diffusion model (Hiranaka et al., arXiv 2410.05116).

Each round (:meth:`HeroTrainer.update` inside :class:`~hfrl.agents.diffusion.trainer.OnlineDiffusionTrainer`'s
loop):

1. sample a batch from the current model, starting from the initial noises of step 5 of the last round;
2. ask people (or :class:`~hfrl.diffusion_task.TargetDigitLabeler`) to mark every sample good or
   bad and pick the best one — a ``hero`` query on the labelling page;
3. train the *feedback-aligned representation*: an embedding (:class:`~hfrl.rewards.EmbeddingReward`)
   fitted with a triplet loss, anchor = best, positive = good, negative = bad, on all labels so far;
4. reward every sample by its cosine similarity to the best samples' embeddings, and update the model
   with PPO on the reverse chain (DDPO) with DPOK's KL to the base model: on the labelled samples plus
   ``extra_samples`` unlabelled ones, then ``inner_rounds - 1`` more times on fresh unlabelled samples;
5. *feedback-guided image generation*: draw the next round's initial noises around the noises of the good
   samples, ``best_share`` of them around the best one's::

       z = sqrt(1 - eps^2) z_good + eps n,   n ~ N(0, I),   eps = 0.1

   which keeps ``z`` a unit Gaussian (for unit ``z_good`` and ``n``) while staying close to a noise the
   model already turns into a good image.

``METHODS`` maps the ``hfrl hero --method`` names to trainers: ``hero`` and the baselines of
:mod:`hfrl.agents.diffusion` (``rwl``, ``ddpo``, ``d3po``, ``flow-grpo``, ``nft``, ``awm``, ``best-of-n``),
which share the loop, the feedback path and the label count.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from hfrl.agents.diffusion import (
    BASELINES,
    D3POConfig,
    D3POTrainer,
    DDPOConfig,
    DDPOTrainer,
    LearnedRewardPPOConfig,
    LearnedRewardPPOTrainer,
    OnlineDiffusionConfig,
    OnlineDiffusionTrainer,
    OnlineResult,
    RWLDiffusionConfig,
    RWLDiffusionTrainer,
    Trajectories,
)
from hfrl.checkpoint import load_into
from hfrl.diffusion_task import TargetDigitEvaluator, TargetDigitLabeler
from hfrl.errors import ConfigError
from hfrl.feedback import BAD, GOOD, HERO
from hfrl.rewards import (
    RewardModelConfig,
    RewardTrainingConfig,
    TripletFeedback,
    make_reward_model,
    save_reward_model,
    train_reward_model,
)


def recycle_noise(
    best: torch.Tensor,
    good: torch.Tensor,
    num: int,
    *,
    epsilon: float = 0.1,
    best_share: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """HERO's feedback-guided initial noises: ``z = sqrt(1 - eps^2) z_src + eps n``.

    ``round(best_share * num)`` of the sources are the best sample's noise, the rest are drawn uniformly
    (with replacement) from the good samples' noises.

    Args:
        best: ``(C, H, W)`` the initial noise of the best sample.
        good: ``(G, C, H, W)`` the initial noises of the good samples (``G >= 1``; may include the best).
        num: Noises to draw.
        epsilon: ``eps`` in ``[0, 1]``: 0 repeats the sources, 1 is fresh noise.
        best_share: Share of the noises drawn around the best one, in ``[0, 1]``.
        generator: Randomness of ``n`` and of the choice of good sources (CPU).

    Returns:
        ``(num, C, H, W)`` on the CPU.
    """
    if not 0.0 <= epsilon <= 1.0 or not 0.0 <= best_share <= 1.0:
        raise ConfigError(f"epsilon and best_share must be in [0, 1], got {epsilon}, {best_share}")
    if good.shape[0] == 0:
        good = best[None]
    best, good = best.cpu(), good.cpu()
    n_best = int(round(best_share * num))
    pick = torch.randint(0, good.shape[0], (num - n_best,), generator=generator)
    sources = torch.cat([best[None].expand(n_best, *best.shape), good[pick]])  # (num, C, H, W)
    fresh = torch.randn(sources.shape, generator=generator)
    return math.sqrt(1.0 - epsilon**2) * sources + epsilon * fresh


HERO_LR = {"lora": 5e-3, "full": 3e-4}
"""HERO's tuned AdamW learning rate per ``adapter`` (the default when ``lr`` is ``None``)."""


@dataclass
class HeroConfig(LearnedRewardPPOConfig):
    """HERO's settings on top of the shared ones (rounds, PPO weights, ...).

    The defaults were chosen with seeded runs of ``scripts/bench_hero.py`` (digit 7, success on samples
    from fixed fresh noise): LoRA adapters, unlabelled samples scored by the embedding in every round, a
    per-round PPO early stop (``target_kl``), DPOK's KL (``kl``) and a second PPO update per round on fresh
    samples (``inner_rounds``). Their results are in ``bench-results/hero.md`` and the README's HERO
    table; the settings they replaced are listed under it ("Older settings", with the flags that rerun
    them). In short: full fine-tuning learnt more slowly and could drift to speckled samples both
    classifiers accept; without the KL, LoRA learnt about as fast but drew blotchy samples; without the
    early stop as well, a run could collapse in one round.

    More ``policy_epochs`` than the shared default was no clear gain; ``reward_steps``, ``embed_dim`` and
    ``triplet_margin`` were not tuned.
    """

    adapter: str = "lora"
    """``lora``: LoRA adapters (rank ``lora_rank``) on the frozen DDPM; ``full`` trains every weight (see
    the class docstring). Lower ranks barely moved at lower rates, and higher rates than the default
    blew up PPO's ratios."""
    lr: float | None = None  # type: ignore[assignment]
    """AdamW learning rate (> 0); ``None``: :data:`HERO_LR` for the adapter. For full fine-tuning a higher
    rate collapsed the model and a lower one learnt too slowly."""
    kl: float = 0.03
    """DPOK's per-step KL to the base model (with LoRA: the model with its adapters off; >= 0). It keeps the
    samples natural (a source error near 1) at about the same speed (see the class docstring). Not tuned
    with ``adapter=full``."""
    target_kl: float | None = 1.0
    """PPO early stop per round (see :class:`~hfrl.agents.diffusion.config.OnlineDiffusionConfig`). Without
    it, LoRA at its default rate could collapse; a lower value stops too early and slows learning."""
    inner_rounds: int = 2
    """PPO updates per feedback round (>= 1); the second on fresh chains from the updated model that only
    the embedding scores. It cuts the labels needed but makes each round longer and narrows diversity (the
    README's HERO table, "hero, one PPO update a round", from ``scripts/bench_hero.py``)."""
    extra_samples: int = 96
    """Unlabelled samples per round (>= 0), drawn like the labelled ones (around good noises), scored by the
    embedding reward alone and added to the PPO batch. They help with LoRA, not with full fine-tuning.
    Smaller labelled rounds with more extra samples need fewer labels but take more time per label
    (README, "Smaller rounds"; ``scripts/bench_hero.py --batch-size 16 --set hero.extra_samples=112``)."""
    batch_size: int = 32
    """Samples labelled per round (>= 1). Smaller rounds update more often per label, which helps at the
    higher learning rates (``scripts/bench_hero.py``, ``bench-results/hero.md``)."""
    eta: float = 1.0
    """DDIM stochasticity (shared field, HERO's default stated here; tuned with full fine-tuning). With
    ``eta = 1`` a chain's own noise outweighs its initial noise, so recycled noise barely changes success
    (recycled ~ fresh). At 0.5 recycling pays at once on HERO's own noise, but the model itself learns more
    slowly on fresh noise (README, "Recycled noise"; ``scripts/bench_hero.py --set hero.eta=0.5``). The
    fine-tuned model is sampled from fresh noise once HERO is done, so 1 stays; 0.5 suits HERO's own
    sampling (at the cost of diversity: half its noises sit near the best one's)."""
    epsilon: float = 0.1
    """Noise-recycling ``eps`` in ``[0, 1]``: how far the next round's initial noises stray from the good
    ones (paper: 0.1). Not tuned: at ``eta = 1`` recycling barely matters (see ``eta``)."""
    best_share: float = 0.5
    """Share in ``[0, 1]`` of the next round's noises drawn around the best sample's (paper: half). Not
    tuned (see ``epsilon``)."""
    recycle: bool = True
    """Feedback-guided generation on (False: fresh noise every round, the representation alone)."""
    embed_dim: int = 32
    """Size of the feedback-aligned embedding."""
    triplet_margin: float = 0.5
    """Margin of the triplet loss, in cosine distance."""
    reference: str = "best"
    """Reward = similarity to the ``best`` samples' embeddings (paper) or to all ``good`` ones'. ``good``
    learnt more slowly."""

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = HERO_LR.get(self.adapter, HERO_LR["full"])  # a bad adapter is reported below
        super().__post_init__()
        if not 0.0 <= self.epsilon <= 1.0 or not 0.0 <= self.best_share <= 1.0:
            raise ConfigError(
                f"epsilon and best_share must be in [0, 1], got {self.epsilon}, {self.best_share}"
            )
        if self.embed_dim < 1 or self.triplet_margin < 0:
            raise ConfigError(
                f"embed_dim must be >= 1 and triplet_margin >= 0, got {self.embed_dim}, {self.triplet_margin}"
            )
        if self.reference not in ("best", "good"):
            raise ConfigError(f"reference must be 'best' or 'good', got {self.reference!r}")


class HeroTrainer(LearnedRewardPPOTrainer):
    """HERO (arXiv 2410.05116): triplet-embedding reward, PPO on the reverse chain, noise recycling.

    Until the labels hold both a good and a bad sample there is nothing to learn: the round's samples
    are labelled (and counted) and the model is left as it is.
    """

    name = "hero"
    feedback_kind = HERO
    config_class = HeroConfig
    config: HeroConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.reward_model = make_reward_model(
            RewardModelConfig(
                arch="embedding",
                inputs=("output",),
                width=cfg.reward_width,
                embed_dim=cfg.embed_dim,
                reference_reduce="max",
            ),  # fmt: skip
            seed=cfg.seed,
        ).to(self.device)
        self.reward_ready = False
        self.images: list[torch.Tensor] = []
        self.labels: list[float] = []
        self.best: list[bool] = []
        self.best_noise: torch.Tensor | None = None  # (C, H, W)
        self.good_noise: torch.Tensor | None = None  # (G, C, H, W)

    def initial_noise(self, num: int) -> torch.Tensor:
        """Noises around the last good samples' (fresh ones before any good sample, or with ``recycle`` off)."""
        if not self.config.recycle or self.best_noise is None or self.good_noise is None:
            return super().initial_noise(num)
        return recycle_noise(
            self.best_noise, self.good_noise, num, epsilon=self.config.epsilon,
            best_share=self.config.best_share, generator=self.rng,
        )  # fmt: skip

    def eval_noises(self) -> dict[str, torch.Tensor]:
        """Fixed fresh noise (the model alone) and, once there are good samples, recycled noise.

        The recycled set gives ``success_rate_recycled``: what HERO's sampling delivers.
        """
        noises = super().eval_noises()
        if self.config.recycle and self.best_noise is not None and self.good_noise is not None:
            gen = torch.Generator().manual_seed(self.config.seed + 30_011)
            noises["recycled"] = recycle_noise(
                self.best_noise, self.good_noise, self.config.eval_samples, epsilon=self.config.epsilon,
                best_share=self.config.best_share, generator=gen,
            )  # fmt: skip
        return noises

    def update(self, traj: Trajectories, feedback: Any) -> dict[str, float]:  # noqa: D102
        cfg = self.config
        words = feedback.labels
        best = feedback.best
        good_idx = [i for i, w in enumerate(words) if w == GOOD]
        for i, (image, word) in enumerate(zip(traj.images, words)):
            if word in (GOOD, BAD):
                self.images.append(image)
                self.labels.append(1.0 if word == GOOD else 0.0)
                self.best.append(i == best and word == GOOD)
        if good_idx:
            # The best mark falls back to the first good sample when the labeler gave none.
            b = best if best is not None and best in good_idx else good_idx[0]
            self.best_noise = traj.noise[b].cpu()
            self.good_noise = traj.noise[good_idx].cpu()
        metrics: dict[str, float] = {"charts/good": float(len(good_idx))}
        if not (0 < sum(self.labels) < len(self.labels)):
            return metrics
        x = torch.stack(self.images)
        data = TripletFeedback(x, x, torch.tensor(self.labels), torch.tensor(self.best))
        rc = RewardTrainingConfig(
            steps=cfg.reward_steps, batch_size=cfg.reward_batch_size, lr=cfg.reward_lr, triplet_margin=cfg.triplet_margin, reference=cfg.reference,
            seed=cfg.seed + self.round, device=str(self.device),
        )  # fmt: skip
        if cfg.reward_steps:
            result = train_reward_model(self.reward_model, data, rc)
            self.reward_model = result.model  # type: ignore[assignment]
            self.reward_ready = True
            metrics["losses/triplet"] = result.history[-1]["loss"] if result.history else float("nan")
        if not self.reward_ready:
            return metrics
        return metrics | self.learned_reward_ppo(traj, lambda x: self.reward_model.predict_th(x, x))

    def learned_reward(self, images: torch.Tensor) -> torch.Tensor | None:  # noqa: D102
        return self.reward_model.predict_th(images, images) if self.reward_ready else None

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The triplet-trained embedding, every label with its best mark, and the noises recycled next."""
        tensors, values = super().extra_state()
        tensors = {**tensors, **{f"reward.{k}": v for k, v in self.reward_model.state_dict().items()}}
        if self.images:
            tensors["hero.images"] = torch.stack(self.images)
            tensors["hero.labels"] = torch.tensor(self.labels)
            tensors["hero.best"] = torch.tensor(self.best)
        if self.best_noise is not None and self.good_noise is not None:
            tensors["hero.best_noise"] = self.best_noise
            tensors["hero.good_noise"] = self.good_noise
        return tensors, {**values, "reward_ready": self.reward_ready}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
        super().load_extra_state(tensors, values)
        reward = {k[7:]: v for k, v in tensors.items() if k.startswith("reward.")}
        refs = reward.get("references")
        if refs is not None:  # as many references as the best samples so far: the buffer takes their size
            self.reward_model.references = torch.zeros_like(refs).to(self.device)
            self.reward_model.config = dataclasses.replace(
                self.reward_model.config, num_references=int(refs.shape[0])
            )
        load_into(self.reward_model, reward, "the checkpoint's reward model")
        self.images = list(tensors["hero.images"]) if "hero.images" in tensors else []
        self.labels = [float(v) for v in tensors.get("hero.labels", torch.zeros(0))]
        self.best = [bool(v) for v in tensors.get("hero.best", torch.zeros(0, dtype=torch.bool))]
        self.best_noise = tensors.get("hero.best_noise")
        self.good_noise = tensors.get("hero.good_noise")
        self.reward_ready = bool(values["reward_ready"])

    def save_extra(self) -> None:  # noqa: D102
        if self.reward_ready:
            meta = {"labels": len(self.labels), "best": int(sum(self.best))}
            save_reward_model(self.run_dir / "reward", self.reward_model, meta)  # type: ignore[arg-type]


METHODS: dict[str, type[OnlineDiffusionTrainer]] = {HeroTrainer.name: HeroTrainer, **BASELINES}
"""``hfrl hero --method`` names: ``hero``, ``rwl``, ``ddpo``, ``d3po``, ``flow-grpo``, ``nft``, ``awm``,
``best-of-n``."""


def make_online_config(method: str, **fields: Any) -> OnlineDiffusionConfig:
    """The method's config with ``fields`` set by name.

    Raises:
        ConfigError: for an unknown method or field.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method].config_class.from_dict(fields)


def make_online_trainer(
    method: str, config: OnlineDiffusionConfig | None = None, **kwargs: Any
) -> OnlineDiffusionTrainer:
    """Build the trainer of ``method``; ``kwargs`` go to :class:`OnlineDiffusionTrainer` (``run_dir``, ...)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method](config, **kwargs)


__all__ = [
    "METHODS",
    "D3POConfig",
    "D3POTrainer",
    "DDPOConfig",
    "DDPOTrainer",
    "HERO_LR",
    "HeroConfig",
    "HeroTrainer",
    "OnlineResult",
    "RWLDiffusionConfig",
    "RWLDiffusionTrainer",
    "TargetDigitEvaluator",
    "TargetDigitLabeler",
    "make_online_config",
    "make_online_trainer",
    "recycle_noise",
]
