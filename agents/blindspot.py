"""Label-free baselines: blind-spot self-supervision on the noisy target inputs, no reward and no label.

What could a user get from the noisy target images alone? These two agents answer it inside the same
loop, run directory and evaluation as the feedback agents, so every table can put them side by side:

* ``n2s``: a fresh U-Net trained by blind-spot self-supervision (Noise2Self, Batson & Royer 2019) on the
  target observations, then used as the generator. Its output levels are set from its own outputs on the
  noisy inputs (no clean image), as :func:`hfrl.rewards.train_denoiser` does. The frozen source generator
  stays the reference: the "before" of the evaluation and the target of the optional consistency term.
* ``n2s-finetune``: the source generator itself fine-tuned with the blind-spot loss on the target
  observations, with the same auxiliary (source pairs) and consistency regularisers as every agent.

``radius`` (wide blind spots) and ``stride`` (pixel-shuffle down-sampling, ``n2s`` only) are the variants
practitioners use for spatially correlated noise (:mod:`hfrl.blindspot`). Neither agent reads a reward,
a label or a clean target image.
"""

from __future__ import annotations

from typing import Any

import torch

from hfrl.agents.base import Trainer
from hfrl.agents.config import BlindSpotConfig, Noise2SelfConfig
from hfrl.blindspot import blindspot_batch, shuffle_down
from hfrl.device import resolve_device
from hfrl.errors import ConfigError
from hfrl.generators import GeneratorConfig, build_generator
from hfrl.policy import GaussianPolicy


def blindspot_loss(
    predict: Any, noisy: torch.Tensor, config: BlindSpotConfig, generator: torch.Generator
) -> torch.Tensor:
    """Mean squared error of ``predict`` on the hidden pixels of one masked batch.

    Args:
        predict: Maps ``(B', 1, h, w)`` masked (sub-)images to predictions of the same shape.
        noisy: ``(B, C, H, W)`` noisy observations.
        config: ``grid``, ``radius`` and ``stride``.
        generator: Source of the mask's phase.
    """
    x = shuffle_down(noisy, config.stride)
    phase = tuple(int(v) for v in torch.randint(0, config.grid, (2,), generator=generator))
    masked, mask = blindspot_batch(x, phase, config.grid, config.radius)  # type: ignore[arg-type]
    return (((predict(masked) - x) ** 2) * mask).sum() / (mask.sum() * x.shape[0] * x.shape[1])


class BlindSpotFinetuneTrainer(Trainer):
    """Fine-tune the source generator with the blind-spot loss on target inputs (no reward, no labels)."""

    name = "n2s-finetune"
    config_class = BlindSpotConfig
    needs_reward = False

    def __init__(self, config: BlindSpotConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if config.stride > 1:
            raise ConfigError(
                "n2s-finetune keeps the source generator's architecture, which sees whole images; "
                "stride > 1 needs the n2s agent's fully convolutional U-Net"
            )

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        loss_bs = blindspot_loss(self.policy.generator, noisy, self.config, self.rng)  # type: ignore[arg-type]
        reg, metrics = self.regularizers(noisy)
        grad_norm = self.optimize(loss_bs + reg, "blind-spot loss")
        return {"losses/blindspot": loss_bs.item(), **metrics, "charts/grad_norm": grad_norm}


class Noise2SelfTrainer(BlindSpotFinetuneTrainer):
    """A fresh U-Net trained by blind-spot self-supervision on the target inputs, used as the generator."""

    name = "n2s"
    config_class = Noise2SelfConfig

    def __init__(self, config: Noise2SelfConfig, **kwargs: Any) -> None:
        if kwargs.get("policy") is None:
            kwargs["policy"] = self.fresh_policy(config)
        Trainer.__init__(self, config, **kwargs)
        # the source generator stays the reference: the "before" of every evaluation and g_0 of consistency
        self.reference = GaussianPolicy.from_checkpoint(
            config.generator,
            device=self.device,
            space=config.policy_space,
            log_std=config.log_std,  # type: ignore[arg-type]
        ).frozen_copy()

    @staticmethod
    def fresh_policy(config: Noise2SelfConfig) -> GaussianPolicy:
        """A seeded, untrained U-Net (shuffled by ``stride``) as a Gaussian policy."""
        from hfrl.checkpoint import read_checkpoint_config

        source = read_checkpoint_config(str(config.generator), kind="generator")
        size = tuple(source["config"].get("image_size", (28, 28)))
        channels = int(source["config"].get("channels", 1))  # configs saved before colour are grey
        net_config = GeneratorConfig(
            family="unet", width=config.width, image_size=size, shuffle=config.stride, channels=channels
        )  # type: ignore[arg-type]
        device = resolve_device(config.device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(config.seed)
            net = build_generator(net_config)
        return GaussianPolicy(net, space=config.policy_space, log_std=config.log_std).to(device)  # type: ignore[arg-type]

    def update(self) -> dict[str, float]:  # noqa: D102
        noisy = self.observe()
        gen = self.policy.generator
        loss_bs = blindspot_loss(lambda x: torch.sigmoid(gen.core_logits(x)), noisy, self.config, self.rng)  # type: ignore[arg-type]
        reg, metrics = self.regularizers(noisy)
        grad_norm = self.optimize(loss_bs + reg, "blind-spot loss")
        return {"losses/blindspot": loss_bs.item(), **metrics, "charts/grad_norm": grad_norm}

    @torch.no_grad()
    def set_levels(self) -> tuple[float, float]:
        """Map the network's background and stroke levels on the target observations to 0 and 1.

        A network that predicts noisy pixels learns clipped noise's brighter background. Background covers
        most of a digit image and strokes its brightest few per cent, so the median and the 99th
        percentile of its outputs on noisy target inputs (no clean image) are the two levels.
        """
        gen = self.policy.generator
        gen.with_levels(0.0, 1.0)
        noisy = self.domains.target("train").images[:2048]
        noisy = self.noise(noisy, torch.Generator().manual_seed(self.config.seed + 2)).to(self.device)
        raw = torch.cat([torch.sigmoid(gen.logits(chunk)) for chunk in noisy.split(512)]).flatten()
        low, high = float(torch.quantile(raw, 0.5)), float(torch.quantile(raw, 0.99))
        high = min(max(high, low + 1e-2), 1.0)
        gen.with_levels(min(low, high - 1e-2), high)
        return gen.config.levels

    def finish(self, seconds: float) -> dict[str, Any]:  # noqa: D102
        self.set_levels()
        return super().finish(seconds)


__all__ = [
    "BlindSpotConfig",
    "BlindSpotFinetuneTrainer",
    "Noise2SelfConfig",
    "Noise2SelfTrainer",
    "blindspot_loss",
]
