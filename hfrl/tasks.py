"""Named tasks: one preset of data, domains, noise, source generator and judges, used everywhere.

A task says what a run is about: which images (``dataset``), which classes the source generator was
trained on and which it must adapt to, how the images are corrupted (a noise spec string and level, see
:func:`hfrl.noise.make_noise`), the shipped source generator, the judges' classifiers and the seed of
the train/val/test split. The environment (``gym.make("hfrl/Denoise-v0", task=NAME)``), every agent's
config (``task=``), the demo, the benchmarks and the CLI (``--task NAME``) take a task by name; any of
its fields can still be set on its own, which overrides the task's value. Those fields are declared once,
here: :class:`DataConfig` and :class:`TaskConfig` are the dataclasses every run config extends.

The shipped tasks (``scripts/bench_bounds.py`` measures each one's four references, listed in the README):

* ``digits-correlated`` (the default): MNIST digits under spatially correlated Gaussian noise. A person
  reads the digit in the noisy input, the source generator (trained on noisy '0's) fails on many other
  digits, and the label-free baselines — blind-spot self-supervision with and without correlation-aware
  masks, classical denoisers tuned on the source pairs — stay far below what clean targets would give:
  people's feedback is the only usable signal about the target domain.
* ``digits-white``: the first default, white Gaussian noise of sigma 0.5. Blind-spot self-supervision
  alone gets close to the supervised bound here, so labels add little; it stays as the reference case.
* ``fashion-white``: Fashion-MNIST (source: T-shirts; target: the other nine kinds) under white noise,
  read from the IDX files Debian's ``dataset-fashion-mnist`` installs; its judges are classifiers
  ``scripts/bench_fashion.py`` trains (no digit judge is valid there).
* ``patches-colour``: 32x32 RGB patches of the pictures scikit-image bundles (``skimage-patches``, see
  :func:`hfrl.data.load_skimage_patches`) under spatially correlated noise: the source generator learnt
  on patches of a retinal fundus photograph and must adapt to five photographs and a microscopy slide.
  No judge reads these images, so runs report PSNR/SSIM and the reward.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from hfrl.errors import ConfigError
from hfrl.names import DataSource

C = TypeVar("C")

ASSETS = Path(__file__).resolve().parent / "assets"
"""Folder of the shipped checkpoints."""


@dataclass(frozen=True)
class Task:
    """A named preset of everything that defines a denoising task.

    Attributes:
        name: The preset's name (``--task NAME``).
        description: One line on what the task shows.
        dataset: Dataset name (see :data:`hfrl.data.DATASETS`).
        data_dir: Folder of the dataset's files (``None`` for the embedded digits).
        source_classes: Classes the source generator was trained on.
        target_classes: Classes it must adapt to.
        noise: Noise spec string (``"correlated:length=1"``, ``"gaussian"``, ...).
        noise_level: Noise strength.
        generator: The shipped source generator's asset name, or a checkpoint path.
        labeler: Classifier checkpoint of the synthetic labeler (``None``: the shipped digit one).
        evaluator: Classifier checkpoint of the independent evaluator (``None``: the shipped digit one).
        split_seed: Seed of the stratified train/val/test split.
        denoiser_radius: Blind-spot half-width of the label-free denoiser that suits the noise (0 for
            white noise; wider than the correlation for correlated noise).
        denoiser_stride: Its pixel-shuffle factor (1: whole images).
        reward_reference: The label-free estimate the similarity reward compares outputs with: ``n2s``
            (the blind-spot denoiser above) or ``classical`` (a classical denoiser tuned on the source
            pairs), whichever the noise suits (see :data:`hfrl.experiments.reward.REFERENCES`).
    """

    name: str
    description: str
    dataset: str = "mnist-embedded"
    data_dir: str | None = None
    source_classes: tuple[int, ...] = (0,)
    target_classes: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    noise: str = "gaussian"
    noise_level: float = 0.5
    generator: str = "denoiser_source"
    labeler: str | None = None
    evaluator: str | None = None
    split_seed: int = 0
    denoiser_radius: int = 0
    denoiser_stride: int = 1
    reward_reference: str = "n2s"

    def generator_path(self) -> Path:
        """The source generator checkpoint (without suffix): a shipped asset or the path as given."""
        asset = ASSETS / self.generator
        return asset if asset.with_suffix(".json").exists() else Path(self.generator)

    def noise_model(self) -> Any:
        """The task's :class:`~hfrl.noise.NoiseModel`."""
        from hfrl.noise import make_noise  # torch: not needed to list tasks or build a CLI

        return make_noise(self.noise, self.noise_level)

    def fields(self) -> dict[str, Any]:
        """The settings a run config takes from the task (every attribute but name and description)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "description")
        }


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="digits-correlated",
            description="MNIST digits, spatially correlated Gaussian noise (sigma 0.3, 1-pixel correlation "
            "length): blind-spot self-supervision fails, feedback is the target domain's only signal",
            noise="correlated:length=1",
            noise_level=0.3,
            generator="denoiser_correlated",
            denoiser_radius=2,
            reward_reference="classical",
        ),
        Task(
            name="digits-white",
            description="MNIST digits, white Gaussian noise (sigma 0.5): self-supervision alone comes close "
            "to the supervised bound, so labels add little",
            noise="gaussian",
            noise_level=0.5,
            generator="denoiser_source",
        ),
        Task(
            name="fashion-white",
            description="Fashion-MNIST (source: T-shirts, target: the other nine kinds), white Gaussian noise "
            "(sigma 0.5); needs the IDX files of Debian's dataset-fashion-mnist and judges trained by "
            "scripts/bench_fashion.py",
            dataset="fashion-mnist",
            data_dir="/usr/share/datasets/fashion-mnist",
            noise="gaussian",
            noise_level=0.5,
            generator="denoiser_source",
        ),
        Task(
            name="patches-colour",
            description="32x32 RGB patches of scikit-image's pictures (source: a retinal fundus photograph, "
            "target: five photographs and a microscopy slide), spatially correlated Gaussian noise (sigma "
            "0.2, 1-pixel correlation length); no judge: PSNR/SSIM",
            dataset="skimage-patches",
            source_classes=(6,),
            target_classes=(0, 1, 2, 3, 4, 5),
            noise="correlated:length=1",
            noise_level=0.2,
            generator="denoiser_patches_colour",
            denoiser_radius=2,
            reward_reference="classical",
        ),
    )
}
"""Every shipped task by name."""

DEFAULT_TASK = "digits-correlated"
"""The task a run uses when none is named."""

TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task) if f.name not in ("name", "description"))
"""Names of the settings a task fills in a run config."""


def task_fields_of(cls: type) -> tuple[str, ...]:
    """The settings a named task fills in the config dataclass ``cls``: its fields named as a task's."""
    names = {f.name for f in dataclasses.fields(cls)}
    return tuple(name for name in TASK_FIELDS if name in names)


def get_task(name: str | Task | None = None) -> Task:
    """The task called ``name`` (default :data:`DEFAULT_TASK`); a :class:`Task` is returned as it is.

    Raises:
        ConfigError: for an unknown name.
    """
    if isinstance(name, Task):
        return name
    key = DEFAULT_TASK if name is None else str(name)
    if key not in TASKS:
        raise ConfigError(f"unknown task {key!r}; expected one of {', '.join(TASKS)}")
    return TASKS[key]


def fill_from_task(values: dict[str, Any], task: str | Task | None, names: tuple[str, ...]) -> dict[str, Any]:
    """Fill the ``None`` entries of ``values`` among ``names`` with the task's settings.

    ``generator`` becomes the checkpoint path of the task's source generator; other settings are copied.

    Returns:
        A new dict; entries that are not ``None`` (set by the caller) are kept.
    """
    preset = get_task(task)
    out = dict(values)
    for name in names:
        if out.get(name) is None:
            out[name] = str(preset.generator_path()) if name == "generator" else getattr(preset, name)
    return out


@dataclass
class DataConfig:
    """A task's data settings, declared once and shared by every run config.

    Pre-training's config extends this dataclass, and :class:`TaskConfig` (the demo's, every agent's). Run configs extend this dataclass, so these fields have the same names, types and docstrings in every
    command's flags, TOML file and sweep grid. Each one left unset (``None``) takes the named task's value
    when the config is built (:meth:`fill_task`); set, it overrides the task's.
    """

    TASK_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Settings the task fills when they are left unset (each subclass sets it with :func:`task_fields_of`)."""

    task: str = DEFAULT_TASK
    """Named task (``hfrl.tasks.TASKS``): dataset, domains, noise, source generator and judges."""
    dataset: str | DataSource | None = None
    """Dataset name (default: the task's): the 5,000 embedded MNIST digits, RGB patches of scikit-image's
    bundled pictures (``skimage-patches``), or a torchvision one read from ``data_dir``. The agents also take your own images: an ``ImageSet``, a tensor or array
    ``(N, H, W)``/``(N, C, H, W)``, an ``(images, labels)`` pair, a torchvision-style dataset or a
    ``pathlib.Path`` to images (``--data PATH``); their classes are split into domains as a named dataset's.
    Pre-training takes every image as the source domain when they have no labels. A run directory records
    them as ``{"dataset": "user", shape, sha256}``, never the images."""
    data_dir: str | None = None
    """Folder of torchvision datasets (not needed for ``mnist-embedded``; default: the task's)."""
    source_classes: tuple[int, ...] | None = None
    """Classes the source generator was trained on, the auxiliary loss's data (default: the task's)."""
    noise: str | None = None
    """Noise spec (``correlated:length=1``, ``gaussian``, ``poisson-gaussian``, ``salt-pepper``, ``poisson``;
    default: the task's)."""
    noise_level: float | None = None
    """Noise strength (default: the task's, which keeps the digit readable to a person)."""

    def fill_task(self) -> None:
        """Set every task setting left unset (``None``) to the named task's value."""
        names = self.TASK_FIELDS
        for name, value in fill_from_task({n: getattr(self, n) for n in names}, self.task, names).items():
            setattr(self, name, value)


@dataclass
class TaskConfig(DataConfig):
    """The settings of a whole task, shared by the demo's config and every agent's.

    :class:`DataConfig`'s, and the target domain, the source generator and the evaluator.
    """

    target_classes: tuple[int, ...] | None = None
    """Classes the generator is adapted to, where the policy acts (default: the task's)."""
    generator: str | None = None
    """Source generator checkpoint to start from (default: the task's shipped one, trained on noisy '0's)."""
    evaluator: str | None = None
    """Classifier checkpoint of the independent evaluator that scores the results (default: the task's;
    the shipped digit classifier for the digit tasks; another dataset needs its own, e.g.
    ``scripts/bench_fashion.py`` trains one)."""


def replace_with_task(config: C, names: tuple[str, ...], **changes: Any) -> C:
    """``dataclasses.replace`` for a config whose ``names`` settings come from its ``task``.

    A change of ``task`` resets those of ``names`` that ``changes`` does not set, so they follow the new
    task (the config's ``__post_init__`` fills them) instead of keeping the old task's values.
    """
    if "task" in changes:
        changes = {**{name: None for name in names}, **changes}
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


DataConfig.TASK_FIELDS = task_fields_of(DataConfig)
TaskConfig.TASK_FIELDS = task_fields_of(TaskConfig)


__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "TASK_FIELDS",
    "DataConfig",
    "Task",
    "TaskConfig",
    "fill_from_task",
    "get_task",
    "replace_with_task",
    "task_fields_of",
]
