"""A small DDPM: a U-Net noise predictor, DDPM and DDIM schedulers with log-probabilities, and a sampler.

The package: :mod:`.models` (the U-Net, its noise schedule, model kinds, checkpoints), :mod:`.losses`
(each kind's training loss per sample), :mod:`.schedulers` (reverse steps with log-probabilities, the
sampler) and :mod:`.training` (:func:`train_ddpm`); every name is importable from ``hfrl.diffusion``.

As in diffusers, the noise-prediction *model* and the *scheduler* are separate objects:

* :class:`UNet2D` predicts the noise ``eps`` in a noisy image ``x_t`` at timestep ``t``
  (``(B, 1, H, W), (B,) -> (B, 1, H, W)``). It carries the :class:`NoiseSchedule` it was trained with.
* :class:`DDPMScheduler` (Ho et al. 2020, arXiv 2006.11239) and :class:`DDIMScheduler` (Song et al. 2021,
  arXiv 2010.02502) turn a prediction into one reverse step. :meth:`Scheduler.step` returns a
  :class:`SchedulerStepOutput`: the previous sample, the predicted clean sample, and the mean, standard
  deviation and **log-probability** of the step's Gaussian ``p(x_{t-1} | x_t)``, which policy-gradient
  fine-tuning needs (DDPO, Black et al. 2023, arXiv 2305.13301). Given ``prev_sample``, ``step`` scores
  that sample instead of drawing one, so stored trajectories can be re-evaluated under a new model.

The whole sampling loop (:func:`sample`) is::

    x = torch.randn(shape, generator=generator)                       # x_T
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x, generator=generator).prev_sample
    images = to_images(x)                                             # [-1, 1] -> [0, 1]

**Model kinds.** :mod:`hfrl.flow` adds a second kind, a rectified flow (the same U-Net predicting a
velocity, with :class:`~hfrl.flow.FlowScheduler`'s ODE and SDE steps under the same ``step`` contract). A
model's ``kind`` (``"ddpm"`` or ``"flow"``) picks its loss (:func:`matching_loss`), its sampler
(:func:`model_scheduler`) and its checkpoint kind (:func:`load_model` loads both).

**Pixel range.** The model works on ``x = 2 * image - 1`` in ``[-1, 1]`` (Ho et al.); :func:`to_model_space`
and :func:`to_images` convert. Everything else in hfrl uses images in ``[0, 1]``.

**Timesteps.** Training uses ``T`` (default 1000) timesteps ``0 .. T-1``; ``t = 0`` is the least noisy. A
scheduler with ``N`` inference steps visits ``t_i = (N - 1 - i) * T // N + 1`` (diffusers' "leading"
spacing with offset 1, as DDPO on Stable Diffusion), and the step from the last ``t = 1`` goes to the
noise level of ``t = 0`` (``alpha_bar_0 = 1 - beta_0``, diffusers' ``set_alpha_to_one=False``). So every
step has a non-zero standard deviation (with ``eta > 0`` for DDIM) and a proper log-probability, and the
final sample carries noise of standard deviation ``sqrt(1 - alpha_bar_0) = 0.01`` in ``[-1, 1]`` units,
which clamping to the pixel range hides.
"""

from __future__ import annotations

from hfrl.diffusion.losses import (
    FIT_TIMESTEPS,
    denoising_error,
    denoising_loss,
    matching_input,
    matching_loss,
    random_timesteps,
)
from hfrl.diffusion.models import (
    DDPM_DIGITS,
    DDPM_KIND,
    DDPM_SEVENS,
    DEFAULT_INFERENCE_STEPS,
    DEFAULT_TRAIN_TIMESTEPS,
    MODEL_KINDS,
    SCHEDULE_KINDS,
    SHIPPED_MODELS,
    NoiseSchedule,
    ResBlock,
    SelfAttention,
    UNet2D,
    UNetConfig,
    build_ddpm,
    count_parameters,
    load_ddpm,
    load_model,
    model_checkpoint,
    timestep_embedding,
    to_images,
    to_model_space,
)
from hfrl.diffusion.schedulers import (
    FLOW_SCHEDULERS,
    SCHEDULERS,
    DDIMScheduler,
    DDPMScheduler,
    Scheduler,
    SchedulerStepOutput,
    gaussian_log_prob,
    initial_noise,
    make_scheduler,
    model_scheduler,
    sample,
)
from hfrl.diffusion.training import (
    DDPMTrainConfig,
    random_shift,
    train_ddpm,
)

__all__ = [
    "DDIMScheduler",
    "DDPMScheduler",
    "DDPMTrainConfig",
    "DDPM_DIGITS",
    "DDPM_KIND",
    "DDPM_SEVENS",
    "DEFAULT_INFERENCE_STEPS",
    "DEFAULT_TRAIN_TIMESTEPS",
    "FIT_TIMESTEPS",
    "FLOW_SCHEDULERS",
    "MODEL_KINDS",
    "NoiseSchedule",
    "ResBlock",
    "SCHEDULERS",
    "SCHEDULE_KINDS",
    "SHIPPED_MODELS",
    "Scheduler",
    "SchedulerStepOutput",
    "SelfAttention",
    "UNet2D",
    "UNetConfig",
    "build_ddpm",
    "count_parameters",
    "denoising_error",
    "denoising_loss",
    "gaussian_log_prob",
    "initial_noise",
    "load_ddpm",
    "load_model",
    "make_scheduler",
    "matching_input",
    "matching_loss",
    "model_checkpoint",
    "model_scheduler",
    "random_shift",
    "random_timesteps",
    "sample",
    "timestep_embedding",
    "to_images",
    "to_model_space",
    "train_ddpm",
]
