"""Rewards for the denoising environments: the interface, an oracle stand-in for people, and a resolver.

A reward is any callable ``reward(noisy, output) -> scores``:

* ``noisy``, ``output``: ``(B, C, H, W)`` float32 tensors in ``[0, 1]`` on the environment's device
  (for an ``nn.Module`` reward, on the module's device);
* returns ``(B,)`` scores, higher is better.

Learned reward models (``hfrl.rewards``: an ``nn.Module`` with ``forward(noisy, output)``) fit as they
are, and so do plain functions. The environments score without gradients, in one call per batch.

*Privileged* rewards set ``uses_clean = True`` and are called as
``reward(noisy, output, clean=clean, classes=classes)``. Only oracles do that —
:class:`LabelerReward`, the synthetic labeler's quality score, stands in for people in tests and gives
upper bounds — because a real reward model never sees the clean image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import nn

from hfrl.checkpoint import checkpoint_paths, load_checkpoint
from hfrl.errors import ConfigError, DataError
from hfrl.judges import DigitJudge, SyntheticLabeler, digit_judge_applies

REWARD_MODEL_KIND = "reward_model"
"""Checkpoint kind of learned reward models (registered by :mod:`hfrl.rewards`)."""


@runtime_checkable
class RewardFn(Protocol):
    """Scores outputs: ``(noisy (B, C, H, W), output (B, C, H, W)) -> (B,)``, higher is better."""

    def __call__(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor: ...  # noqa: D102


RewardSpec = RewardFn | nn.Module | str | os.PathLike | None
"""What the environments' ``reward`` argument accepts; see :func:`resolve_reward`."""


class LabelerReward:
    """Oracle reward: the synthetic labeler's judgement of each output against its clean image.

    It stands in for people until a learned reward model is available, and bounds what one could reach:
    it sees the clean image, which a real reward model never does. Use it for tests, demos and upper
    bounds, not as a claim about learning from feedback.

    Args:
        labeler: The judge (default: the shipped :class:`~hfrl.judges.SyntheticLabeler` on ``device``).
        score: ``"quality"`` (classifier probability of the true class times ``max(SSIM, 0)``, the
            labeler's ranking score) or ``"prob"`` (the probability alone).
        device: Where to load the shipped labeler when ``labeler`` is ``None``.
    """

    uses_clean = True

    def __init__(
        self,
        labeler: DigitJudge | None = None,
        score: Literal["quality", "prob"] = "quality",
        device: str | torch.device = "cpu",
    ) -> None:
        if score not in ("quality", "prob"):
            raise ConfigError(f"unknown labeler score {score!r}; expected 'quality' or 'prob'")
        self.labeler = labeler if labeler is not None else SyntheticLabeler.from_pretrained(device=device)
        if score == "prob" and not getattr(self.labeler, "has_classifier", True):
            raise ConfigError(
                "labeler score 'prob' needs a labeler with a classifier; this one judges SSIM only"
            )
        self.score = score

    def __call__(
        self, noisy: torch.Tensor, output: torch.Tensor, *, clean: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        """``(B,)`` scores in ``[0, 1]`` on ``output``'s device.

        Args:
            noisy: ``(B, C, H, W)`` inputs (unused: the oracle looks at the clean image instead).
            output: ``(B, C, H, W)`` outputs to judge.
            clean: ``(B, C, H, W)`` the clean images.
            classes: ``(B,)`` true classes (``-1``: unknown, SSIM only).
        """
        judgement = self.labeler.judge(output, clean, classes)
        values = judgement.quality if self.score == "quality" else judgement.prob
        return values.to(output.device)

    def __repr__(self) -> str:
        return f"LabelerReward(score={self.score!r})"


def load_reward_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a learned reward model (any :mod:`hfrl.rewards` model) from a checkpoint of kind ``reward_model``.

    The checkpoint kind's builder, :func:`hfrl.rewards.build_reward_model`, is imported on first use, so
    the environments do not import :mod:`hfrl.rewards` until a reward model is loaded.

    Args:
        path: Checkpoint path (``NAME``, ``NAME.safetensors``, ``NAME.json`` or a run directory).
        device: Where to put the model.

    Raises:
        ConfigError: when the builder cannot be imported (a broken installation).
        CheckpointError: for a missing, corrupt or mismatched checkpoint.
    """
    try:
        module, _ = load_checkpoint(path, kind=REWARD_MODEL_KIND, device=device)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{path}: cannot build a reward model: importing its builder failed ({exc}); "
            "reinstall hfrl, or pass a callable reward or 'labeler'"
        ) from None
    return module


def resolve_reward(
    spec: RewardSpec, device: str | torch.device = "cpu", *, image_shape: tuple[int, ...] | None = None
) -> RewardFn | None:
    """Turn the environments' ``reward`` argument into a reward callable.

    Args:
        spec: ``None`` (no reward model: the reward is 0 and only wrappers add terms); ``"labeler"`` (the
            :class:`LabelerReward` oracle); a reward-model checkpoint path; an ``nn.Module`` with
            ``forward(noisy, output)``; or any :class:`RewardFn` callable.
        device: Where the labeler or a checkpoint is loaded. Modules and callables are used as given.
        image_shape: ``(C, H, W)`` of the images scored; for images the shipped digit labeler cannot read
            (anything but 1x28x28), ``"labeler"`` is a labeler without a classifier, which judges SSIM and
            correlation to the clean image only.

    Raises:
        ConfigError: for anything else, or a path that does not exist.
    """
    if spec is None or callable(spec):
        return spec  # type: ignore[return-value]
    if isinstance(spec, str) and spec == "labeler":
        if image_shape is not None and not digit_judge_applies(image_shape):
            return LabelerReward(SyntheticLabeler(None))
        return LabelerReward(device=device)
    if isinstance(spec, (str, os.PathLike)):
        _, config = checkpoint_paths(spec)
        if not config.is_file():
            raise ConfigError(
                f"unknown reward {str(spec)!r}: expected 'labeler', a reward-model checkpoint path, "
                "an nn.Module or a callable(noisy, output) -> scores"
            )
        return load_reward_model(Path(spec), device)
    raise ConfigError(
        f"reward must be 'labeler', a checkpoint path, an nn.Module or a callable, got {type(spec).__name__}"
    )


def reward_image_shape(reward: object) -> tuple[int, int, int] | None:
    """``(C, H, W)`` a reward model was built for; ``None`` for callables and models that take any size.

    A CNN or embedding reward's dense layer fixes ``(H, W)``; every model fixes its channels (a similarity
    reward through its denoiser's).
    """
    config = getattr(reward, "config", None)
    if config is None or not hasattr(config, "image_size") or not hasattr(config, "arch"):
        return None
    channels = int(getattr(config, "channels", 1))
    if config.arch == "similarity":  # its network is the denoiser's (a classical estimate takes any image)
        denoiser = getattr(config, "denoiser", None) or {}
        return (int(denoiser.get("channels", 1)), -1, -1) if "family" in denoiser else None
    return (channels, *(int(v) for v in config.image_size))  # type: ignore[return-value]


def check_reward_shape(reward: object, image_shape: tuple[int, ...]) -> None:
    """Refuse a reward model built for other images than the data's, in one line naming both shapes.

    Raises:
        DataError: when the channels, or the size of a model with a fixed size, differ.
    """
    want = reward_image_shape(reward)
    if want is None:
        return
    have = tuple(int(v) for v in image_shape)
    if want[0] != have[0] or (want[1] > 0 and want[1:] != have[1:]):
        text = "x".join(str(v) for v in want) if want[1] > 0 else f"{want[0]}-channel"
        raise DataError(
            f"the reward model scores {text} images but the data are {'x'.join(map(str, have))}; train a "
            "reward model on these images (hfrl reward train)"
        )


def module_device(fn: object) -> torch.device | None:
    """The device of a module's first parameter or buffer; ``None`` for other callables or empty modules."""
    if isinstance(fn, nn.Module):
        for tensor in fn.parameters():
            return tensor.device
        for tensor in fn.buffers():
            return tensor.device
    return None


@torch.no_grad()
def call_reward(
    reward: RewardFn,
    noisy: torch.Tensor,
    output: torch.Tensor,
    clean: torch.Tensor,
    classes: torch.Tensor,
) -> torch.Tensor:
    """Score a batch with any reward and check what comes back.

    Inputs move to a module reward's device and the scores back to ``output``'s device; a module in
    training mode scores in eval mode (and is put back); privileged rewards (``uses_clean = True``) also
    get ``clean`` and ``classes``.

    Args:
        reward: The reward callable.
        noisy: ``(B, C, H, W)`` observations.
        output: ``(B, C, H, W)`` outputs in ``[0, 1]``.
        clean: ``(B, C, H, W)`` clean images (passed to privileged rewards only).
        classes: ``(B,)`` classes (privileged rewards only).

    Returns:
        ``(B,)`` float32 scores on ``output``'s device.

    Raises:
        DataError: when the reward returns something other than ``B`` finite numbers.
    """
    device = output.device
    target = module_device(reward) or device
    args = (noisy.to(target), output.to(target))
    training = isinstance(reward, nn.Module) and reward.training
    if training:
        reward.eval()  # score without dropout, so that the same seed gives the same rewards
    try:
        if getattr(reward, "uses_clean", False):
            scores = reward(*args, clean=clean.to(target), classes=classes.to(target))  # type: ignore[call-arg]
        else:
            scores = reward(*args)
    finally:
        if training:
            reward.train()
    scores = torch.as_tensor(scores).detach()
    batch = output.shape[0]
    if scores.numel() != batch or scores.ndim > 2:
        raise DataError(
            f"reward returned shape {tuple(scores.shape)}; expected ({batch},), one score per image"
        )
    scores = scores.reshape(batch).to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(scores).all()):
        raise DataError("reward returned NaN or inf")
    return scores
