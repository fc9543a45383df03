"""Stable-Baselines3 agents whose actor is the generator: SB3's PPO and A2C on ``hfrl/Denoise-v0``.

:class:`GeneratorActorCriticPolicy` is an SB3 ``ActorCriticPolicy`` whose Gaussian mean *is* the
generator's output (pretrained weights included) and whose critic is a small CNN. SB3 steps the batched
environment through :class:`~hfrl.envs.sb3.SB3VecEnvAdapter`, and the regularisers come from the reward
terms of :mod:`hfrl.envs.wrappers` (KL to the pretrained policy, consistency with the initial generator,
the source-domain term), so SB3 optimises the same objective as the native agents without custom code.

Example (the documented recipe, without the trainer)::

    import gymnasium as gym, hfrl.envs
    from stable_baselines3 import PPO
    from hfrl.agents.sb3 import GeneratorActorCriticPolicy
    from hfrl.envs.sb3 import SB3VecEnvAdapter
    from hfrl.envs.wrappers import ConsistencyTerm, KLTerm, add_reward_terms
    from hfrl.policy import GaussianPolicy

    policy = GaussianPolicy.from_checkpoint()                 # the shipped source-domain denoiser
    venv = gym.make_vec("hfrl/Denoise-v0", num_envs=64, vectorization_mode="vector_entry_point",
                        reward="path/to/reward_model", evaluate=False)
    venv = add_reward_terms(venv, KLTerm(policy.frozen_copy(), coef=0.01),
                            ConsistencyTerm(policy.frozen_copy().generator, coef=1.0))
    model = PPO(GeneratorActorCriticPolicy, SB3VecEnvAdapter(venv), n_steps=1, batch_size=32,
                policy_kwargs={"generator": policy.generator}, learning_rate=1e-4)
    venv.set_policy(model.policy)  # the KL term's acting policy: SB3's mean and learnt log-std
    model.learn(6_400)
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from hfrl.agents.base import Trainer
from hfrl.agents.config import SB3A2CConfig, SB3Config
from hfrl.envs.sb3 import SB3VecEnvAdapter
from hfrl.envs.wrappers import ConsistencyTerm, KLTerm, SourceAuxTerm, add_reward_terms
from hfrl.errors import ConfigError

GENERATOR_KEY = "mlp_extractor.generator."


class ImagePassthrough(BaseFeaturesExtractor):
    """Hands the ``(B, C, H, W)`` observation to the policy unchanged (the generator needs the image)."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__(observation_space, features_dim=int(np.prod(observation_space.shape)))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return observations


class GeneratorExtractor(nn.Module):
    """SB3's ``mlp_extractor`` slot: actor latent = generator output (flattened), critic = small CNN."""

    def __init__(self, generator: nn.Module, image_shape: tuple[int, ...], value_width: int = 32) -> None:
        super().__init__()
        self.generator = generator
        self.latent_dim_pi = int(np.prod(image_shape))
        self.latent_dim_vf = value_width
        self.critic = nn.Sequential(
            nn.Conv2d(int(image_shape[0]), 8, 3, stride=2, padding=1),  # grey or colour observations
            nn.ReLU(),  # (B, 8, H/2, W/2)
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, 16, H/4, W/4)
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),  # (B, 64)
            nn.Linear(64, value_width),
            nn.ReLU(),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """The generator's output, ``(B, C*H*W)``: the mean of SB3's diagonal Gaussian."""
        return self.generator(features).flatten(1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """Value features ``(B, value_width)``."""
        return self.critic(features)


class GeneratorActorCriticPolicy(ActorCriticPolicy):
    """An SB3 actor-critic whose action mean is a generator network.

    Pass the generator through ``policy_kwargs={"generator": module}``; its parameters are trained in
    place. The action distribution is SB3's diagonal Gaussian with a learnt per-pixel log-std
    (``log_std_init``, default -2 as in :class:`~hfrl.policy.GaussianPolicy`).

    Args:
        observation_space: ``Box(0, 1, (C, H, W))``.
        action_space: ``Box(0, 1, (1, H, W))``.
        lr_schedule: SB3's learning-rate schedule.
        generator: The generator (``(B, C, H, W) -> (B, C, H, W)`` in ``[0, 1]``).
        value_width: Width of the critic's last layer.
        **kwargs: Other ``ActorCriticPolicy`` arguments.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        lr_schedule: Any,
        generator: nn.Module | None = None,
        value_width: int = 32,
        **kwargs: Any,
    ) -> None:
        if generator is None:
            raise ConfigError("GeneratorActorCriticPolicy needs policy_kwargs={'generator': module}")
        # nn.Module forbids assigning a module before Module.__init__, which SB3's __init__ calls and which
        # builds the extractor; park the generator in the instance dict until _build_mlp_extractor takes it.
        self.__dict__["_pending"] = (generator, value_width)
        kwargs.setdefault("log_std_init", -2.0)
        kwargs["features_extractor_class"] = ImagePassthrough
        kwargs["ortho_init"] = False  # keep the pretrained weights
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build_mlp_extractor(self) -> None:
        generator, value_width = self.__dict__.pop("_pending")
        self.mlp_extractor = GeneratorExtractor(generator, self.observation_space.shape, value_width)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        # SB3 puts a Linear layer between the latent and the mean; the generator's output is the mean.
        self.action_net = nn.Identity()
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)


def regularised_venv(trainer: Trainer) -> tuple[SB3VecEnvAdapter, KLTerm, SourceAuxTerm]:
    """The trainer's batched environment with the regularisers as reward terms, as an SB3 ``VecEnv``.

    The terms are the KL to the trainer's reference (its acting policy is set later, with
    :meth:`KLTerm.set_policy`), the consistency with the reference's generator and the source-domain term
    on the trainer's policy, weighted by the config's ``kl``, ``consistency`` and ``aux``. The adapter does
    not autoreset: the SB3 trainers reset before every update, so no batch of episodes is thrown away.

    Returns:
        ``(venv, kl_term, aux_term)``.
    """
    cfg = trainer.config
    reward_aux = SourceAuxTerm(
        cfg.aux,
        policy=trainer.policy,
        images=trainer.domains.source("train").images,
        noise=trainer.noise,
        batch_size=cfg.aux_batch_size,
        seed=cfg.seed + 2,
    )
    kl_term = KLTerm(trainer.reference, coef=cfg.kl)
    terms = [kl_term, ConsistencyTerm(trainer.reference.generator, coef=cfg.consistency), reward_aux]
    return SB3VecEnvAdapter(add_reward_terms(trainer.env, *terms), autoreset=False), kl_term, reward_aux


def numpy_rng_state() -> list[Any]:
    """NumPy's global RNG state as JSON (SB3 draws minibatches and action noise from it)."""
    state = np.random.get_state()  # noqa: NPY002
    return [state[0], state[1].tolist(), *state[2:]]  # type: ignore[index]


def set_numpy_rng_state(state: list[Any]) -> None:
    """Restore what :func:`numpy_rng_state` returned."""
    np.random.set_state((state[0], np.asarray(state[1], dtype=np.uint32), *state[2:]))  # noqa: NPY002


class SB3Trainer(Trainer):
    """Runs an SB3 algorithm, one rollout per update, inside the shared trainer loop."""

    name: ClassVar[str] = "sb3-ppo"
    config_class = SB3Config
    config: SB3Config
    algorithm: ClassVar[type] = PPO

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.venv, self.kl_term, self.reward_aux = regularised_venv(self)
        common = {
            "learning_rate": cfg.lr,
            "n_steps": 1,  # one step is one episode; the batch is the N sub-environments
            "ent_coef": cfg.ent_coef,
            "vf_coef": cfg.vf_coef,
            "max_grad_norm": cfg.max_grad_norm or 1e9,
            "policy_kwargs": {"generator": self.policy.generator, "log_std_init": cfg.log_std},
            "seed": cfg.seed,
            "device": self.device,
            "verbose": 0,
        }
        if self.algorithm is PPO:
            common.update(
                batch_size=min(cfg.minibatch_size, cfg.batch_size),
                n_epochs=cfg.n_epochs,
                clip_range=cfg.clip_range,
            )
        else:
            # A2C's raw advantages are rewards minus a critic that starts from nothing; normalised per
            # rollout, as PPO's are, they give its single gradient step per rollout a usable scale.
            common.update(normalize_advantage=True)
        self.model = self.algorithm(GeneratorActorCriticPolicy, self.venv, **common)
        # The KL reward term takes SB3's Gaussian (the generator's output and SB3's learnt per-pixel
        # log-std), so the closed-form KL applies; the trainer's GaussianPolicy shares the generator only.
        self.kl_term.set_policy(self.model.policy)
        # SB3 trains with its own optimiser: make it the trainer's, so checkpoints save the one in use
        # (the base class's Adam over the GaussianPolicy is never stepped).
        self.optimizer = self.model.policy.optimizer
        # An in-memory logger: SB3's default writes a fresh temporary folder on every learn() call, and the
        # trainer already logs SB3's numbers (sb3/*) with its own.
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        # SB3 seeds the env for its next reset; the trainer seeded it already and restores its RNGs on
        # resume, so a pending reseed would make a resumed run draw different episodes.
        self.venv._reset_seeds()

    def update(self) -> dict[str, float]:  # noqa: D102
        self.model._last_obs = None  # reset every update, so a resumed run draws the same episodes
        self.model.learn(self.config.batch_size, reset_num_timesteps=False, progress_bar=False)
        logged = dict(self.model.logger.name_to_value)
        buffer = self.model.rollout_buffer
        rewards = torch.as_tensor(buffer.rewards)
        out = {
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()),
            **{f"sb3/{k.split('/')[-1]}": float(v) for k, v in logged.items() if isinstance(v, (int, float))},
        }
        with torch.no_grad():
            noisy = torch.as_tensor(buffer.observations, device=self.device).reshape(
                -1, *self.env.task.image_shape
            )
            _, reg = self.regularizers(noisy)
            # The shared regulariser's KL uses the GaussianPolicy's fixed log-std; SB3 acts with its own.
            reg["losses/kl"] = float(self.kl_term.kl(noisy).mean())
        return {**out, **reg}

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:  # noqa: D102
        # The generator's weights are saved with the trainer's policy; safetensors refuses shared tensors.
        tensors = {
            f"sb3.{k}": v
            for k, v in self.model.policy.state_dict().items()
            if not k.startswith(GENERATOR_KEY)
        }
        tensors["torch_rng"] = torch.get_rng_state()
        tensors["reward_aux_rng"] = self.reward_aux.generator.get_state()
        values = {"num_timesteps": self.model.num_timesteps, "np_rng": numpy_rng_state()}
        return tensors, values  # SB3's optimiser is self.optimizer: the base class saves it

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: D102
        own = {k[4:]: v for k, v in tensors.items() if k.startswith("sb3.")}
        generator = {k: v for k, v in self.model.policy.state_dict().items() if k.startswith(GENERATOR_KEY)}
        self.model.policy.load_state_dict({**own, **generator})
        torch.set_rng_state(tensors["torch_rng"])
        self.reward_aux.generator.set_state(tensors["reward_aux_rng"])
        set_numpy_rng_state(values["np_rng"])
        self.model.num_timesteps = int(values["num_timesteps"])


class SB3A2CTrainer(SB3Trainer):
    """Stable-Baselines3 A2C with the generator as the actor."""

    name = "sb3-a2c"
    config_class = SB3A2CConfig
    algorithm = A2C
