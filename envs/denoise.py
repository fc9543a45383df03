"""``hfrl/Denoise-v0``: denoising one image is one whole episode.

:class:`DenoiseTask` holds what every denoising environment shares — the domain's images on a device,
the noise model, the reward and the evaluator — and works on whole batches: it starts episodes (draws
images and their noise) and scores outputs. :class:`DenoiseEnv` is the Gymnasium environment over a
batch of one; :class:`hfrl.envs.vector.BatchedDenoiseEnv` is the same task over a batch of ``N``, which is
why the two give the same results for the same seeds.

Each episode's noise is a pure function of the clean image and a 64-bit key drawn from the
environment's ``np_random``: Gaussian noise comes from a counter-based generator (:func:`keyed_normal`),
so a whole batch is drawn in one vectorised call on any device and episode ``i`` of a batch gets exactly
the noise a single environment with the same key gets.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding

from hfrl.data import (
    SPLITS,
    Domains,
    ImageSet,
    load_dataset,
    load_embedded_mnist,
    parse_classes,
    to_image_set,
)
from hfrl.device import resolve_device
from hfrl.envs.rewards import LabelerReward, RewardSpec, call_reward, check_reward_shape, resolve_reward
from hfrl.errors import ConfigError, DataError
from hfrl.judges import Evaluator, check_judge_shape, judge_shape
from hfrl.metrics import psnr
from hfrl.noise import DEFAULT_LEVEL, GaussianDriven, NoiseModel, make_noise
from hfrl.tasks import Task, get_task

DOMAINS = ("target", "source", "all")
RESET_OPTIONS = ("index", "noise_level", "group")
DEFAULT_RENDER_SCALE = 4

# ---------------------------------------------------------------------------------------------------------
# Keyed noise: a counter-based generator (SplitMix64's finaliser, Steele, Lea & Flood 2014), so that the
# noise of an episode depends only on its key, never on the batch it is drawn in.


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _int64(0x9E3779B97F4A7C15)
_MIX1 = _int64(0xBF58476D1CE4E5B9)
_MIX2 = _int64(0x94D049BB133111EB)


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic), element-wise."""
    z = (z ^ _shift_right(z, 30)) * _MIX1
    z = (z ^ _shift_right(z, 27)) * _MIX2
    return z ^ _shift_right(z, 31)


def keyed_normal(keys: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Standard normal noise that is a pure function of a 64-bit key per sample.

    Pair ``j`` of sample ``b`` hashes ``keys[b] + (j + 1) * golden`` with SplitMix64; two 24-bit fields of
    the hash are the uniforms of a Box-Muller transform, whose cosine and sine give two independent
    normals. A batch of keys is drawn in one vectorised call on the keys' device, and row ``b`` never
    depends on the other rows.

    Args:
        keys: ``(B,)`` int64 keys.
        shape: Shape of one sample, e.g. ``(C, H, W)``.

    Returns:
        ``(B, *shape)`` float32 on ``keys``' device.
    """
    count = int(np.prod(shape))
    z = splitmix64(keys.reshape(-1, 1) + _counter((count + 1) // 2, keys.device))  # (B, pairs)
    u1 = (_shift_right(z, 40).float() + 0.5) * 2.0**-24  # in (0, 1): log(u1) is finite
    theta = ((z >> 16) & 0xFFFFFF).float() * (2.0 * torch.pi * 2.0**-24)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    normal = torch.cat([radius * torch.cos(theta), radius * torch.sin(theta)], dim=1)[:, :count]
    return normal.reshape(-1, *shape)


@functools.lru_cache(maxsize=8)
def _counter(count: int, device: torch.device) -> torch.Tensor:
    """``(j + 1) * golden`` for ``j < count``: the per-value offsets of :func:`keyed_normal`."""
    return torch.arange(1, count + 1, dtype=torch.int64, device=device) * _GOLDEN


def corrupt(noise: NoiseModel, clean: torch.Tensor, keys: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Noisy versions of ``clean`` whose randomness comes from one key per image.

    Gaussian noise, white or correlated (:class:`~hfrl.noise.GaussianDriven`), shapes normals from
    :func:`keyed_normal` (vectorised, on the images' device). Any other noise model runs once per image
    with a CPU ``torch.Generator`` seeded by its key: exact, but a Python loop.

    Args:
        noise: The noise model; its own ``level`` is ignored in favour of ``levels``.
        clean: ``(B, C, H, W)`` clean images.
        keys: ``(B,)`` int64 keys on ``clean``'s device.
        levels: ``(B,)`` noise levels.

    Returns:
        ``(B, C, H, W)`` noisy images in ``[0, 1]`` on ``clean``'s device.
    """
    if isinstance(noise, GaussianDriven):
        z = keyed_normal(keys, noise.normal_shape(tuple(clean.shape)))
        return noise.from_normal(clean, z, levels)
    out = [
        noise.with_level(level)(image[None], torch.Generator().manual_seed(key))
        for image, key, level in zip(clean.cpu(), keys.tolist(), levels.tolist())
    ]
    return torch.cat(out).to(clean.device)


# ---------------------------------------------------------------------------------------------------------
# Data


@functools.lru_cache(maxsize=1)
def _embedded_mnist() -> ImageSet:
    return load_embedded_mnist()  # ~1 s; environments are built many times per process (checkers, tests)


def resolve_images(dataset: Any, data_dir: str | None = None, labels: Any = None) -> ImageSet:
    """Turn the ``dataset`` argument into an :class:`~hfrl.data.ImageSet`.

    Args:
        dataset: A dataset name (see :data:`hfrl.data.DATASETS`; all but ``mnist-embedded`` need
            ``data_dir``), or the user's images in any form :func:`hfrl.data.to_image_set` takes: an
            :class:`ImageSet`, a tensor or array of grey images ``(N, H, W)`` or ``(N, C, H, W)`` (uint8, or
            float in ``[0, 1]``), an ``(images, labels)`` pair, a torchvision-style dataset, or a path.
        data_dir: Folder of torchvision datasets.
        labels: ``(N,)`` classes of a tensor or array ``dataset``; unknown (``-1``) when omitted.

    Raises:
        DataError: for anything else, or unusable images.
    """
    if isinstance(dataset, str):
        return _embedded_mnist() if dataset == "mnist-embedded" else load_dataset(dataset, data_dir)
    return to_image_set(dataset, labels=labels)


def select_domain(
    data: ImageSet,
    domain: str,
    source_classes: tuple[int, ...],
    target_classes: tuple[int, ...],
    split: str,
    split_seed: int,
) -> ImageSet:
    """The images of one domain and split; images without labels form a single domain of their own."""
    if domain not in DOMAINS:
        raise ConfigError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}, all")
    domains = Domains(data, source_classes, target_classes, split_seed)  # checks that they do not overlap
    part = data if split == "all" else data.split(split, split_seed)
    if domain == "all" or not bool((part.labels >= 0).any()):
        chosen = part
    else:
        classes = domains.source_classes if domain == "source" else domains.target_classes
        chosen = part.with_classes(classes, f"{domain}/{split}")
    if len(chosen) == 0:
        raise DataError(f"{domain}/{split}: no images; use a larger dataset or split='all'")
    return chosen


# ---------------------------------------------------------------------------------------------------------
# The shared batched core


@dataclass(frozen=True)
class Episodes:
    """A batch of started episodes (``B = 1`` for :class:`DenoiseEnv`), all on the task's device.

    Attributes:
        index: ``(B,)`` int64 position of each image in the task's domain images.
        key: ``(B,)`` int64 noise keys.
        level: ``(B,)`` float32 noise levels.
        noisy: ``(B, C, H, W)`` the observations.
        clean: ``(B, C, H, W)`` the clean images (private to the environment and its oracles).
        classes: ``(B,)`` int64 classes (``-1``: unknown).
    """

    index: torch.Tensor
    key: torch.Tensor
    level: torch.Tensor
    noisy: torch.Tensor
    clean: torch.Tensor
    classes: torch.Tensor


@dataclass(frozen=True)
class Transition:
    """A batch of finished episodes, as reward terms see it (see :mod:`hfrl.envs.wrappers`).

    Attributes:
        episodes: What the episodes started from (observations, clean images, classes, ...).
        action: ``(B, C, H, W)`` float32 actions as the agent gave them (checked, not clipped).
        output: ``(B, C, H, W)`` the actions clipped to ``[0, 1]``: the images that were scored.
    """

    episodes: Episodes
    action: torch.Tensor
    output: torch.Tensor

    @property
    def noisy(self) -> torch.Tensor:
        """``(B, C, H, W)`` observations."""
        return self.episodes.noisy


class DenoiseTask:
    """Images, noise, reward and evaluator of a denoising environment, working on whole batches.

    Both :class:`DenoiseEnv` and :class:`~hfrl.envs.vector.BatchedDenoiseEnv` are thin faces over one of
    these; see :class:`DenoiseEnv` for the arguments.
    """

    def __init__(
        self,
        reward: RewardSpec = "labeler",
        *,
        task: str | Task | None = None,
        dataset: Any = None,
        data_dir: str | None = None,
        labels: Any = None,
        domain: Literal["target", "source", "all"] = "target",
        source_classes: Sequence[int] | str | None = None,
        target_classes: Sequence[int] | str | None = None,
        split: str = "train",
        split_seed: int | None = None,
        noise: str | NoiseModel | None = None,
        noise_level: float | None = None,
        evaluate: bool = True,
        evaluator: Evaluator | None = None,
        expose_clean: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = resolve_device(device)
        self.preset = get_task(task)
        if dataset is None:  # the task's images, and where they lie
            dataset, data_dir = self.preset.dataset, data_dir or self.preset.data_dir
        self.data = resolve_images(dataset, data_dir, labels)
        self.source_classes = parse_classes(
            self.preset.source_classes if source_classes is None else source_classes
        )
        self.target_classes = parse_classes(
            self.preset.target_classes if target_classes is None else target_classes
        )
        self.split_seed = int(self.preset.split_seed if split_seed is None else split_seed)
        self.domain = domain
        self.split = split
        domain_set = select_domain(
            self.data, domain, self.source_classes, self.target_classes, split, self.split_seed
        )
        self.images = domain_set.images.to(self.device)  # (M, C, H, W)
        self.labels = domain_set.labels.to(self.device)  # (M,)
        self.image_shape: tuple[int, int, int] = domain_set.image_shape

        if isinstance(noise, NoiseModel):
            self.noise = noise if noise_level is None else noise.with_level(noise_level)
        elif noise is None:
            level = self.preset.noise_level if noise_level is None else noise_level
            self.noise = make_noise(self.preset.noise, level)
        else:
            self.noise = make_noise(noise, DEFAULT_LEVEL if noise_level is None else noise_level)
        self.level = float(self.noise.level)

        self.reward = resolve_reward(reward, self.device, image_shape=self.image_shape)
        if isinstance(self.reward, LabelerReward):
            check_judge_shape(self.reward.labeler, self.image_shape, "the labeler reward")
        check_reward_shape(self.reward, self.image_shape)
        self.evaluator: Evaluator | None = None
        if evaluate:
            self.evaluator = (
                evaluator
                if evaluator is not None
                else Evaluator.from_pretrained(self.preset.evaluator, device=self.device)
            )
            self._check_evaluator_shape(self.evaluator)
        self.expose_clean = bool(expose_clean)

    def _check_evaluator_shape(self, judge: Evaluator) -> None:
        want = judge_shape(judge)
        if want is not None and want != tuple(self.image_shape):
            have = "x".join(map(str, self.image_shape))
            raise ConfigError(
                f"evaluate=True needs {'x'.join(map(str, want))} images (its classifier's input) but the domain "
                f"has {have}; pass evaluate=False and a reward for {have} images"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def source_images(self, split: str = "train") -> torch.Tensor:
        """Clean source-domain images ``(M, C, H, W)`` on the CPU (for the source-domain auxiliary term).

        Raises:
            DataError: when the images have no labels, so there is no source domain.
        """
        if not bool((self.data.labels >= 0).any()):
            raise DataError("the images have no labels, so there is no source domain; pass source images")
        return select_domain(
            self.data, "source", self.source_classes, self.target_classes, split, self.split_seed
        ).images

    # -- starting episodes ---------------------------------------------------------------------------------

    def draw(self, rngs: Sequence[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """Two 64-bit draws per episode, one generator per episode: image positions and noise keys.

        Returns:
            ``(index, key)``: ``(B,)`` int64 arrays.
        """
        raw = np.stack([rng.bit_generator.random_raw(2) for rng in rngs])  # (B, 2) uint64
        return (raw[:, 0] % np.uint64(len(self))).astype(np.int64), raw[:, 1].view(np.int64)

    def start(self, index: np.ndarray, key: np.ndarray, options: Mapping[str, Any] | None = None) -> Episodes:
        """Start ``B`` episodes from drawn positions and keys, applying reset ``options``.

        Args:
            index: ``(B,)`` drawn image positions (replaced by ``options["index"]`` when given).
            key: ``(B,)`` noise keys.
            options: ``{"index": int or B ints, "noise_level": float or B floats, "group": K}``, all
                optional. ``group`` makes each run of ``K`` consecutive episodes share the first one's
                image, noise and level (``B`` must be a multiple of ``K``): ``K`` actions for one input,
                for group-relative baselines (RLOO, GRPO) and best-of-K selection.

        Raises:
            ConfigError: for unknown options or out-of-range values.
        """
        batch = len(index)
        group = 1
        levels = np.full(batch, self.level, dtype=np.float32)
        if options:
            if not isinstance(options, Mapping):
                raise ConfigError(f"reset options must be a dict, got {type(options).__name__}")
            unknown = sorted(set(options) - set(RESET_OPTIONS))
            if unknown:
                raise ConfigError(f"unknown reset option(s) {unknown}; expected {', '.join(RESET_OPTIONS)}")
            if options.get("index") is not None:
                index = _option_values(options["index"], batch, "index", np.int64)
                if index.min() < 0 or index.max() >= len(self):
                    raise ConfigError(
                        f"reset option index must be in [0, {len(self) - 1}], got {index.tolist()}"
                    )
            if options.get("noise_level") is not None:
                levels = _option_values(options["noise_level"], batch, "noise_level", np.float32)
                if not (np.isfinite(levels).all() and (levels >= 0).all()):
                    raise ConfigError(
                        f"reset option noise_level must be finite and >= 0, got {levels.tolist()}"
                    )
            if options.get("group") is not None:
                group = options["group"]
                if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 1:
                    raise ConfigError(f"reset option group must be an int >= 1, got {group!r}")
                if batch % group:
                    raise ConfigError(f"reset option group={group} must divide the {batch} episodes")
        if group > 1:
            first = np.arange(batch) // group * group
            index, key, levels = index[first], key[first], levels[first]
        dev = self.device
        index_t = torch.from_numpy(np.ascontiguousarray(index)).to(dev)
        key_t = torch.from_numpy(np.ascontiguousarray(key)).to(dev)
        level_t = torch.from_numpy(levels).to(dev)
        clean = self.images.index_select(0, index_t)
        noisy = corrupt(self.noise, clean, key_t, level_t)
        return Episodes(index_t, key_t, level_t, noisy, clean, self.labels.index_select(0, index_t))

    def reset_info(self, episodes: Episodes) -> dict[str, torch.Tensor]:
        """What ``reset`` reports: ``index``, ``noise_level`` and, if exposed, ``clean``."""
        info = {"index": episodes.index, "noise_level": episodes.level}
        if self.expose_clean:
            info["clean"] = episodes.clean
        return info

    # -- finishing episodes --------------------------------------------------------------------------------

    def check_actions(self, actions: Any, batch: int | None) -> torch.Tensor:
        """Validate actions and return them as float32 on the task's device (not yet clipped).

        Args:
            actions: ``(C, H, W)`` for one episode (``batch=None``) or ``(B, C, H, W)``; a float NumPy array
                or tensor.
            batch: ``B``, or ``None`` for a single action.

        Returns:
            ``(B, C, H, W)`` float32 (``B = 1`` for a single action).

        Raises:
            DataError: for another shape, a non-float dtype, NaN or inf.
        """
        expected = self.image_shape if batch is None else (batch, *self.image_shape)
        if isinstance(actions, torch.Tensor):
            tensor = actions.detach()
        else:
            array = np.asarray(actions)
            if array.dtype.kind != "f":
                raise DataError(
                    f"action dtype {array.dtype} is not supported; expected floats in [0, 1] (float32)"
                )
            if array.dtype.itemsize > 8:  # long double: torch has no such dtype
                array = array.astype(np.float64)
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        if not tensor.is_floating_point():
            raise DataError(
                f"action dtype {tensor.dtype} is not supported; expected floats in [0, 1] (float32)"
            )
        if tuple(tensor.shape) != tuple(expected):
            raise DataError(
                f"action has shape {tuple(tensor.shape)}, expected {tuple(expected)} "
                f"(one {self.image_shape[1]}x{self.image_shape[2]} output image per episode)"
            )
        tensor = tensor.to(device=self.device, dtype=torch.float32)  # beyond float32's range becomes inf
        # One reduction in the common case; the element-wise check only when the sum is not finite.
        if not bool(torch.isfinite(tensor.sum())) and not bool(torch.isfinite(tensor).all()):
            raise DataError(
                "action contains NaN or inf; outputs must be finite (out-of-range values are clipped)"
            )
        return tensor.reshape(-1, *self.image_shape)

    @torch.no_grad()
    def finish(
        self, episodes: Episodes, actions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, Any], Transition]:
        """Score a batch of checked actions.

        Args:
            episodes: The episodes the actions answer.
            actions: ``(B, C, H, W)`` from :meth:`check_actions`.

        Returns:
            ``(reward, info, transition)``: ``(B,)`` float32 rewards; the step info (tensors, and the
            ``reward_components`` dict); the transition for reward terms.
        """
        output = actions.clamp(0.0, 1.0)
        info: dict[str, Any] = {}
        if self.reward is None:
            reward = torch.zeros(output.shape[0], device=self.device)
            info["reward_components"] = {}
        else:
            reward = call_reward(self.reward, episodes.noisy, output, episodes.clean, episodes.classes)
            info["score"] = reward
            info["reward_components"] = {"reward_model": reward}
        if self.evaluator is not None:
            # Judgements come back on the CPU; one small copy keeps the info on the task's device.
            judgement = self.evaluator.judge(output, episodes.clean, episodes.classes)
            info["good"] = judgement.good.to(self.device)
            info["ssim"] = judgement.ssim.to(self.device)
            info["psnr"] = psnr(output, episodes.clean)
        info["class"] = episodes.classes
        info["index"] = episodes.index
        info["noise_level"] = episodes.level
        if self.expose_clean:
            info["clean"] = episodes.clean
        return reward, info, Transition(episodes, actions, output)


def _option_values(value: Any, batch: int, name: str, dtype: type) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or (dtype is np.int64 and array.dtype.kind == "f"):
        raise ConfigError(f"reset option {name} must be {'an integer' if dtype is np.int64 else 'a number'}")
    if array.ndim == 0:
        return np.full(batch, array, dtype=dtype)
    if array.shape != (batch,):
        raise ConfigError(f"reset option {name} must be one value or {batch} values, got shape {array.shape}")
    return array.astype(dtype)


# ---------------------------------------------------------------------------------------------------------
# Rendering


def render_frame(panels: Sequence[torch.Tensor | None], scale: int) -> np.ndarray:
    """Side-by-side grey panels ``(C, H, W)`` (``None``: a dark placeholder) as an RGB frame.

    Returns:
        ``(H * scale, (k * W + k - 1) * scale, 3)`` uint8, panels separated by mid-grey columns.
    """
    shape = next(p for p in panels if p is not None).shape[-2:]
    columns = []
    for i, panel in enumerate(panels):
        if i:
            columns.append(np.full((shape[0], 1), 128, dtype=np.uint8))
        if panel is None:
            columns.append(np.full(shape, 32, dtype=np.uint8))
        else:
            grey = panel.detach().float().cpu().clamp(0, 1).reshape(shape).numpy()
            columns.append(np.round(grey * 255).astype(np.uint8))
    frame = np.concatenate(columns, axis=1)
    frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    return np.repeat(frame[:, :, None], 3, axis=2)


def check_render(render_mode: str | None, render_scale: int, modes: Sequence[str]) -> None:
    """Validate the render arguments of an environment."""
    if render_mode is not None and render_mode not in modes:
        raise ConfigError(f"unknown render_mode {render_mode!r}; expected None or one of {', '.join(modes)}")
    if int(render_scale) < 1:
        raise ConfigError(f"render_scale must be a positive integer, got {render_scale}")


# ---------------------------------------------------------------------------------------------------------
# The single environment


class DenoiseEnv(gym.Env[np.ndarray, np.ndarray]):
    """Denoise one noisy image; the output image is the action, and one step is the whole episode.

    ## Description

    A generator (the agent's policy) is shown a noisy image of a digit and answers with a denoised image.
    A reward model scores the pair ``(noisy, output)``; an independent evaluator reports whether the
    output shows the right digit, which the agent never sees. Fine-tuning a generator trained on one
    domain (the digit 0) to a target domain (digits 1-9) from such rewards is the reinforcement-learning
    view of learning from human feedback (the seed paper, arXiv 2308.00307).

    ## Action Space

    ``Box(0, 1, (1, H, W), float32)``: the output image (``(1, 28, 28)`` for MNIST). Values outside
    ``[0, 1]`` are clipped before scoring (Gaussian policies overshoot; the clipping is part of the
    environment). A wrong shape, a non-float dtype, NaN or inf raises :class:`~hfrl.errors.DataError`
    (a ``ValueError``).

    ## Observation Space

    ``Box(0, 1, (1, H, W), float32)``: the noisy image, clipped to ``[0, 1]``. The observation returned by
    ``step`` is the clipped output the episode ended with.

    ## Rewards

    ``reward(noisy, output)`` from the pluggable reward (a learned reward model, any callable, or the
    synthetic labeler oracle ``"labeler"``); 0 with ``reward=None``. Regularisers (KL to a reference
    policy, consistency with the initial generator, a source-domain term) are added by the wrappers in
    :mod:`hfrl.envs.wrappers`. ``reset`` info: ``index``, ``noise_level`` (and ``clean``). ``step`` info:

    * ``score``: the raw reward-model score (absent with ``reward=None``);
    * ``reward_components``: ``{"reward_model": score, ...}``; wrappers add theirs, and the reward is
      always their sum;
    * ``good``, ``psnr``, ``ssim``: the evaluator's verdict and PSNR (dB) / SSIM of the output against
      the clean image (only with ``evaluate=True``);
    * ``class``, ``index``, ``noise_level``: the digit, its position in the domain, the noise level;
    * ``clean``: the clean image ``(C, H, W)``, only with ``expose_clean=True`` (supervised baselines).

    ## Starting State

    An image drawn uniformly from the domain's split and its noise, both from ``np_random``;
    ``options={"index": i, "noise_level": s}`` fixes either for that reset. In the batched environment,
    ``options={"group": K}`` also makes each run of ``K`` sub-environments share one image and its noise.

    ## Episode End

    Every step terminates (``terminated=True``, ``truncated=False``); there is no time limit. Stepping
    again before ``reset`` raises :class:`gymnasium.error.ResetNeeded`.

    ## Arguments

    ```python
    gymnasium.make("hfrl/Denoise-v0", task="digits-correlated", reward="labeler", domain="target",
                   split="train", evaluate=True, expose_clean=False, device="cpu", render_mode=None)
    ```

    Args:
        reward: The reward (see :func:`hfrl.envs.rewards.resolve_reward`): ``"labeler"`` (default, an
            oracle that sees the clean image), a reward-model checkpoint path, an ``nn.Module`` or
            callable ``(noisy, output) -> (B,)``, or ``None`` for reward 0.
        task: A named task (:data:`hfrl.tasks.TASKS`; default ``"digits-correlated"``): the dataset,
            classes, noise, split seed and evaluator that the arguments below leave unset.
        dataset: ``"mnist-embedded"`` (the digit tasks' 5,000 digits bundled offline), another dataset name with
            ``data_dir``, an :class:`~hfrl.data.ImageSet`, a tensor/array of images, or a torchvision-style
            dataset; see :func:`resolve_images`. Any image size works (``evaluate`` and the labeler need
            28x28).
        data_dir: Folder of torchvision datasets.
        labels: Classes of a tensor ``dataset`` (unknown when omitted; unlabelled images form one domain).
        domain: ``"target"`` (default), ``"source"`` or ``"all"`` classes.
        source_classes: Source classes, e.g. ``(0,)`` or ``"0"`` (default: the task's, ``(0,)``).
        target_classes: Target classes (default: the task's, ``1-9``).
        split: ``"train"`` (default), ``"val"``, ``"test"`` or ``"all"``; stratified, fixed by ``split_seed``.
        split_seed: Seed of the split (default: the task's, 0).
        noise: A noise spec (``"correlated:length=1"``, ``"gaussian"``, ``"poisson-gaussian"``,
            ``"salt-pepper"``, ``"poisson"``; see :func:`hfrl.noise.make_noise`) or a
            :class:`~hfrl.noise.NoiseModel` (default: the task's).
        noise_level: Noise strength (default: the task's level with the task's noise, 0.5 with a named
            noise, or the model's own level).
        evaluate: Report the evaluator's verdict, PSNR and SSIM in ``info`` (default ``True``). It costs a
            classifier forward and an SSIM per step: on a CPU one to five times a small reward model's
            forward (``scripts/bench_env.py``). Turn it off for throughput.
        evaluator: A custom :class:`~hfrl.judges.Evaluator` (default: the shipped one).
        expose_clean: Put the clean image in ``info`` (default ``False``).
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``: where images, noise and scoring
            live.
        render_mode: ``None`` or ``"rgb_array"``: ``noisy | output (| clean)`` upscaled, ``(H', W', 3)``
            uint8.
        render_scale: Upscaling factor of rendered frames (default 4).
        seed: Seed ``np_random`` at construction (``reset(seed=...)`` works as usual).

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        reward: RewardSpec = "labeler",
        *,
        task: str | Task | None = None,
        dataset: Any = None,
        data_dir: str | None = None,
        labels: Any = None,
        domain: Literal["target", "source", "all"] = "target",
        source_classes: Sequence[int] | str | None = None,
        target_classes: Sequence[int] | str | None = None,
        split: str = "train",
        split_seed: int | None = None,
        noise: str | NoiseModel | None = None,
        noise_level: float | None = None,
        evaluate: bool = True,
        evaluator: Evaluator | None = None,
        expose_clean: bool = False,
        device: str | torch.device = "cpu",
        render_mode: str | None = None,
        render_scale: int = DEFAULT_RENDER_SCALE,
        seed: int | None = None,
    ) -> None:
        check_render(render_mode, render_scale, self.metadata["render_modes"])
        self.task = DenoiseTask(
            reward,
            task=task,
            dataset=dataset,
            data_dir=data_dir,
            labels=labels,
            domain=domain,
            source_classes=source_classes,
            target_classes=target_classes,
            split=split,
            split_seed=split_seed,
            noise=noise,
            noise_level=noise_level,
            evaluate=evaluate,
            evaluator=evaluator,
            expose_clean=expose_clean,
            device=device,
        )
        self.observation_space = spaces.Box(0.0, 1.0, self.task.image_shape, np.float32)
        self.action_space = spaces.Box(0.0, 1.0, self.task.image_shape, np.float32)
        self.render_mode = render_mode
        self.render_scale = int(render_scale)
        self._episodes: Episodes | None = None
        self._transition: Transition | None = None
        if seed is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)

    @property
    def last_transition(self) -> Transition | None:
        """The last finished episode (for reward terms and rendering), ``None`` before the first step."""
        return self._transition

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: draw an image and its noise from ``np_random``.

        Args:
            seed: Reseeds ``np_random``.
            options: ``{"index": int, "noise_level": float}``, both optional, for this episode only.

        Returns:
            ``(observation, info)``: the noisy image ``(C, H, W)`` float32 and ``{"index", "noise_level"}``
            (plus ``"clean"`` when exposed).
        """
        super().reset(seed=seed)
        index, key = self.task.draw([self.np_random])  # always two draws, whatever the options
        self._episodes = self.task.start(index, key, options)
        self._transition = None
        info = {k: _item(v) for k, v in self.task.reset_info(self._episodes).items()}
        return _image(self._episodes.noisy), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the output image and end the episode.

        Args:
            action: The output image ``(C, H, W)``, floats (clipped to ``[0, 1]``).

        Returns:
            ``(observation, reward, terminated, truncated, info)``: the clipped output, the reward,
            ``True``, ``False`` and the step info (see the class docstring).

        Raises:
            ResetNeeded: before ``reset`` or after the episode ended.
            DataError: for a wrong shape or dtype, NaN or inf.
        """
        if self._episodes is None:
            raise ResetNeeded(
                "DenoiseEnv.step() needs an episode: call reset() first (every episode is a single step)"
            )
        actions = self.task.check_actions(action, batch=None)
        reward, info, self._transition = self.task.finish(self._episodes, actions)
        self._episodes = None
        step_info = {k: _item(v) for k, v in info.items()}
        return _image(self._transition.output), float(reward[0]), True, False, step_info

    def render(self) -> np.ndarray | None:
        """``noisy | output (| clean)`` as an RGB ``uint8`` frame (``rgb_array`` mode), else ``None``.

        After ``reset`` the output panel is a dark placeholder; after ``step`` it shows the clipped output.
        """
        if self.render_mode != "rgb_array":
            return None
        if self._transition is not None:
            ep, output = self._transition.episodes, self._transition.output[0]
        elif self._episodes is not None:
            ep, output = self._episodes, None
        else:
            raise ResetNeeded("DenoiseEnv.render() needs an episode: call reset() first")
        panels = [ep.noisy[0], output] + ([ep.clean[0]] if self.task.expose_clean else [])
        return render_frame(panels, self.render_scale)


def _image(batch: torch.Tensor) -> np.ndarray:
    """The only image of a ``(1, 1, H, W)`` batch as a new ``(C, H, W)`` float32 array."""
    return batch[0].detach().cpu().numpy().copy()


def _item(value: Any) -> Any:
    """A batch-of-one info value as a Python scalar (or a ``(C, H, W)`` array for images)."""
    if isinstance(value, dict):
        return {k: _item(v) for k, v in value.items()}
    if value.ndim > 1:
        return _image(value)
    return value[0].item()
