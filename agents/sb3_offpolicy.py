"""Stable-Baselines3 off-policy agents whose actor is the generator: SB3's SAC and TD3 on ``hfrl/Denoise-v0``.

Both start from the pretrained generator, as the PPO/A2C adapter (:mod:`hfrl.agents.sb3`) does:

* :class:`GeneratorSACPolicy`: SAC's actor is a tanh-squashed Gaussian whose pre-tanh mean is half the
  generator's logits. SB3 maps ``tanh`` onto the ``[0, 1]`` pixel range as ``(1 + tanh(u)) / 2 =
  sigmoid(2u)``, so the deterministic action is ``sigmoid(logits) = g(x)``, the generator's output, and
  the policy is a Gaussian over logits (``policy_space = "logit"``) with a learnt per-pixel log-std.
* :class:`GeneratorTD3Policy`: TD3's deterministic actor is ``2 g(x) - 1`` in SB3's ``[-1, 1]`` units,
  i.e. the generator's output on the pixel range; it explores with Gaussian action noise.

The critics are small CNN Q-networks on the observation and the action as a two-channel image
(:class:`ImageCritic`). The regularisers are reward terms (:func:`hfrl.agents.sb3.regularised_venv`), so
SB3 optimises the objective of the other agents without custom losses.

Example (the documented recipe, without the trainer)::

    import math, gymnasium as gym, hfrl.envs
    from hfrl.agents.sb3_offpolicy import GeneratorSAC, GeneratorSACPolicy
    from hfrl.envs.sb3 import SB3VecEnvAdapter
    from hfrl.envs.wrappers import ConsistencyTerm, add_reward_terms
    from hfrl.policy import GaussianPolicy

    policy = GaussianPolicy.from_checkpoint(space="logit")     # the shipped source-domain denoiser
    initial = policy.frozen_copy().generator
    venv = gym.make_vec("hfrl/Denoise-v0", num_envs=64, vectorization_mode="vector_entry_point",
                        reward="path/to/reward_model", evaluate=False)
    venv = add_reward_terms(venv, ConsistencyTerm(initial, coef=1.0))
    model = GeneratorSAC(GeneratorSACPolicy, SB3VecEnvAdapter(venv), learning_starts=256, ent_coef=0.0,
                         learning_rate=3e-5, critic_learning_rate=3e-4,
                         policy_kwargs={"generator": policy.generator, "reference": initial,
                                        "log_std_init": -2.0 - math.log(2)})
    model.learn(6_400)

A :class:`~hfrl.envs.wrappers.KLTerm` with a logit-space reference takes ``model.actor`` as its acting
policy (``venv.set_policy(model.actor)``).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from hfrl.agents.base import Trainer
from hfrl.agents.config import SB3OffPolicyConfig, SB3SACConfig, SB3TD3Config
from hfrl.agents.sb3 import numpy_rng_state, regularised_venv, set_numpy_rng_state
from hfrl.errors import ConfigError

REPLAY_FIELDS = ("observations", "actions", "rewards", "dones", "timeouts")
"""The replay buffer's arrays that a checkpoint keeps (the filled rows)."""


def half_logits(generator: nn.Module, noisy: torch.Tensor) -> torch.Tensor:
    """``atanh(2 g(x) - 1) = logits(x) / 2``, flattened ``(B, H*W)``: SAC's pre-tanh mean.

    Raises:
        ConfigError: for a generator without ``logits()`` or whose output is not ``sigmoid(logits)``.
    """
    logits = getattr(generator, "logits", None)
    if not callable(logits):
        raise ConfigError(
            f"sb3-sac needs a generator with a logits() method (its output sigmoid(logits)); "
            f"{type(generator).__name__} has none"
        )
    return logits(noisy).flatten(1) / 2


class GeneratorSACActor(BasePolicy):
    """SAC's actor: a tanh-squashed Gaussian whose pre-tanh mean is ``logits(x) / 2``.

    SB3 maps its ``[-1, 1]`` actions onto the ``[0, 1]`` action space, so the deterministic action is the
    generator's output. The log standard deviation is one learnt value per pixel, in pre-tanh units.

    Args:
        observation_space: ``Box(0, 1, (1, H, W))``.
        action_space: ``Box(0, 1, (1, H, W))``.
        generator: The generator (trained in place); its ``forward`` must be ``sigmoid(logits)``.
        log_std_init: Initial pre-tanh log standard deviation (the logit-space one minus ``log 2``).
        learn_std: Train the log standard deviation.
    """

    action_space: gym.spaces.Box

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        generator: nn.Module,
        log_std_init: float = -2.0 - math.log(2.0),
        learn_std: bool = True,
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        levels = tuple(getattr(getattr(generator, "config", None), "levels", (0.0, 1.0)))
        if levels != (0.0, 1.0):
            raise ConfigError(
                f"sb3-sac needs a generator whose output is sigmoid(logits); this one maps levels {levels}"
            )
        self.generator = generator
        action_dim = int(np.prod(action_space.shape))
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)), requires_grad=learn_std)
        self.action_dist = SquashedDiagGaussianDistribution(action_dim)
        self.use_sde = False

    def get_action_dist_params(
        self, obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Pre-tanh mean ``(B, H*W)``, log-std ``(B, H*W)`` and no extra arguments (SB3's interface)."""
        mean = half_logits(self.generator, obs)
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(mean)
        return mean, log_std, {}

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions in ``[-1, 1]``, ``(B, H*W)``: ``tanh`` of the mean, or of a reparameterised sample."""
        mean, log_std, _ = self.get_action_dist_params(obs)
        return self.action_dist.actions_from_params(mean, log_std, deterministic=deterministic)

    def action_log_prob(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action and its log-probability (with the tanh correction), as SAC trains."""
        mean, log_std, _ = self.get_action_dist_params(obs)
        return self.action_dist.log_prob_from_params(mean, log_std)

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self(observation, deterministic)


class GeneratorTD3Actor(BasePolicy):
    """TD3's deterministic actor: ``2 g(x) - 1``, the generator's output in SB3's ``[-1, 1]`` units.

    Args:
        observation_space: ``Box(0, 1, (1, H, W))``.
        action_space: ``Box(0, 1, (1, H, W))``.
        generator: The generator (outputs in ``[0, 1]``).
    """

    def __init__(
        self, observation_space: gym.spaces.Box, action_space: gym.spaces.Box, generator: nn.Module
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        self.generator = generator

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions ``(B, H*W)`` in ``[-1, 1]``."""
        return 2 * self.generator(obs).flatten(1) - 1

    def _predict(self, observation: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self(observation)


class ImageQNetwork(nn.Module):
    """One Q-network: a small CNN on the observation and the action stacked as image channels.

    Args:
        channels: Channels of the stacked input (observation plus action).
        width: Channels of the second convolution (the first has half as many).
    """

    def __init__(self, channels: int, width: int = 32) -> None:
        super().__init__()
        half = max(width // 2, 1)
        self.net = nn.Sequential(
            nn.Conv2d(channels, half, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, width/2, H/2, W/2)
            nn.Conv2d(half, width, 3, stride=2, padding=1),
            nn.ReLU(),  # (B, width, H/4, W/4)
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),  # (B, 16 width)
            nn.Linear(16 * width, 64),
            nn.ReLU(),
            nn.Linear(64, 1),
        )

    def forward(self, pair: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(pair)


class ImageCritic(BaseModel):
    """SB3's critic slot (``ContinuousCritic``'s interface) with image Q-networks.

    SB3 hands the critic flattened actions in ``[-1, 1]``; they are reshaped to the observation's image
    shape, mapped back onto ``[0, 1]`` and stacked with the observation and, when a reference generator
    is given, its output: the consistency reward term measures the action against that output, which a
    small CNN could not recompute from the noisy input.

    Args:
        observation_space: ``Box(0, 1, (C, H, W))``.
        action_space: ``Box(0, 1, (C, H, W))``.
        n_critics: Number of Q-networks (clipped double Q-learning takes their minimum).
        width: Width of each Q-network.
        reference: The frozen initial generator (kept out of the critic's parameters and state), or
            ``None``.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        n_critics: int = 2,
        width: int = 32,
        reference: nn.Module | None = None,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.__dict__["reference"] = reference  # not a submodule: frozen, shared, never saved twice
        channels = int(observation_space.shape[0]) * (2 if reference is None else 3)
        self.share_features_extractor = False
        self.n_critics = n_critics
        self.q_networks: list[nn.Module] = []
        for idx in range(n_critics):
            q_net = ImageQNetwork(channels, width)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def _pair(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        channels = [obs, (actions.reshape(obs.shape) + 1) / 2]
        if self.reference is not None:
            with torch.no_grad():
                channels.append(self.reference(obs))
        return torch.cat(channels, dim=1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every Q-network's ``Q(x, a)``, each ``(B, 1)``."""
        pair = self._pair(obs, actions)
        return tuple(q_net(pair) for q_net in self.q_networks)

    def q1_forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The first Q-network's ``Q(x, a)`` ``(B, 1)`` (TD3's actor loss)."""
        return self.q_networks[0](self._pair(obs, actions))


class GeneratorSACPolicy(SACPolicy):
    """An SB3 SAC policy whose actor is the generator (:class:`GeneratorSACActor`), with image critics.

    Pass the generator through ``policy_kwargs={"generator": module}``; its parameters are trained in
    place.

    Args:
        observation_space: ``Box(0, 1, (1, H, W))``.
        action_space: ``Box(0, 1, (1, H, W))``.
        lr_schedule: SB3's learning-rate schedule.
        generator: The generator, with ``logits()``.
        critic_width: Width of the Q-networks.
        learn_std: Train the actor's per-pixel log-std.
        log_std_init: Initial pre-tanh log-std (default ``-2 - log 2``: logit-space std ``exp(-2)``).
        reference: The frozen initial generator, whose output the critics see (see :class:`ImageCritic`).
        **kwargs: Other ``SACPolicy`` arguments (``n_critics``, ``optimizer_kwargs``...).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        lr_schedule: Any,
        generator: nn.Module | None = None,
        critic_width: int = 32,
        learn_std: bool = True,
        log_std_init: float = -2.0 - math.log(2.0),
        reference: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if generator is None:
            raise ConfigError("GeneratorSACPolicy needs policy_kwargs={'generator': module}")
        # SB3's __init__ builds the actor (make_actor) after Module.__init__; park the generator until then.
        self.__dict__["_pending"] = (generator, critic_width, learn_std)
        self.__dict__["reference"] = reference
        super().__init__(observation_space, action_space, lr_schedule, log_std_init=log_std_init, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> GeneratorSACActor:  # noqa: D102
        generator, self.critic_width, learn_std = self.__dict__.pop("_pending")
        actor = GeneratorSACActor(
            self.observation_space,  # type: ignore[arg-type]
            self.action_space,
            generator,
            log_std_init=self.actor_kwargs["log_std_init"],
            learn_std=learn_std,
        )
        return actor.to(self.device)

    def make_critic(self, features_extractor: Any = None) -> ImageCritic:  # type: ignore[override]  # noqa: D102
        n_critics = self.critic_kwargs["n_critics"]
        critic = ImageCritic(
            self.observation_space, self.action_space, n_critics, self.critic_width, self.reference
        )  # type: ignore[arg-type]
        return critic.to(self.device)


class GeneratorTD3Policy(TD3Policy):
    """An SB3 TD3 policy whose actor is the generator (:class:`GeneratorTD3Actor`), with image critics.

    The target actor holds its own copy of the generator (Polyak-averaged by SB3).

    Args:
        observation_space: ``Box(0, 1, (1, H, W))``.
        action_space: ``Box(0, 1, (1, H, W))``.
        lr_schedule: SB3's learning-rate schedule.
        generator: The generator (trained in place).
        critic_width: Width of the Q-networks.
        reference: The frozen initial generator, whose output the critics see (see :class:`ImageCritic`).
        **kwargs: Other ``TD3Policy`` arguments.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        lr_schedule: Any,
        generator: nn.Module | None = None,
        critic_width: int = 32,
        reference: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if generator is None:
            raise ConfigError("GeneratorTD3Policy needs policy_kwargs={'generator': module}")
        self.__dict__["_pending"] = (generator, critic_width)
        self.__dict__["reference"] = reference
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> GeneratorTD3Actor:  # type: ignore[override]  # noqa: D102
        if "_pending" in self.__dict__:  # the actor: the generator itself
            generator, self.critic_width = self.__dict__.pop("_pending")
        else:  # the target actor: a copy
            generator = copy.deepcopy(self.actor.generator)
        actor = GeneratorTD3Actor(self.observation_space, self.action_space, generator)  # type: ignore[arg-type]
        return actor.to(self.device)

    def make_critic(self, features_extractor: Any = None) -> ImageCritic:  # type: ignore[override]  # noqa: D102
        n_critics = self.critic_kwargs["n_critics"]
        critic = ImageCritic(
            self.observation_space, self.action_space, n_critics, self.critic_width, self.reference
        )  # type: ignore[arg-type]
        return critic.to(self.device)


class _GeneratorAlgorithm:
    """What the generator-actor algorithms change in SB3's SAC and TD3.

    * They act with the policy from the first step: SB3 acts uniformly at random before
      ``learning_starts``, which here would fill the replay buffer with noise images instead of the
      generator's outputs.
    * The critics may learn at their own rate, ``critic_learning_rate`` (SB3 gives every optimiser the
      one ``learning_rate``): a pretrained actor should move slowly while the critics, which start from
      nothing, catch up.
    """

    critic_learning_rate: float | None = None
    critic: nn.Module

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        return super()._sample_action(0, action_noise, n_envs)  # type: ignore[misc]

    def _update_learning_rate(self, optimizers: Any) -> None:
        super()._update_learning_rate(optimizers)  # type: ignore[misc]
        if self.critic_learning_rate is not None:
            for group in self.critic.optimizer.param_groups:  # type: ignore[union-attr]
                group["lr"] = self.critic_learning_rate


class GeneratorSAC(_GeneratorAlgorithm, SAC):
    """SB3's SAC as :class:`_GeneratorAlgorithm` changes it (``critic_learning_rate``: default SAC's)."""

    def __init__(self, *args: Any, critic_learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.critic_learning_rate = critic_learning_rate


class GeneratorTD3(_GeneratorAlgorithm, TD3):
    """SB3's TD3 as :class:`_GeneratorAlgorithm` changes it (``critic_learning_rate``: default TD3's)."""

    def __init__(self, *args: Any, critic_learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.critic_learning_rate = critic_learning_rate


def _optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state as ``{prefix.PID.KEY: tensor}`` (Adam's are all tensors)."""
    return {
        f"{prefix}.{pid}.{key}": value.detach().cpu().contiguous()
        for pid, state in optimizer.state_dict()["state"].items()
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def _load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str, device: torch.device
) -> None:
    """Restore what :func:`_optimizer_tensors` returned (the settings stay the optimiser's own)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})


class SB3OffPolicyTrainer(Trainer):
    """Runs an SB3 off-policy algorithm inside the shared trainer loop.

    Each update adds one batch of ``batch_size`` one-step episodes to SB3's replay buffer, then runs
    ``gradient_steps`` of SB3's training (once ``learning_starts`` episodes are in, every ``train_freq``-th
    update). Checkpoints keep SB3's networks, optimisers, counters and the filled part of the replay
    buffer, so a resumed run equals an uninterrupted one on CPU.
    """

    name: ClassVar[str] = "sb3-off-policy"
    config_class: ClassVar[type[SB3OffPolicyConfig]] = SB3OffPolicyConfig
    config: SB3OffPolicyConfig
    losses: ClassVar[tuple[str, ...]] = ("actor_loss", "critic_loss")
    """SB3's training numbers logged as ``sb3/NAME`` every update (NaN when it did not train)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.venv, self.kl_term, self.reward_aux = regularised_venv(self)
        common = {
            "learning_rate": cfg.lr,
            "critic_learning_rate": cfg.critic_lr,
            "buffer_size": cfg.buffer_size,
            "learning_starts": cfg.learning_starts,
            "batch_size": cfg.minibatch_size,
            "tau": cfg.tau,
            "gamma": cfg.gamma,
            "train_freq": 1,  # one SB3 step is one batch of episodes, one update; update() applies train_freq
            "gradient_steps": cfg.gradient_steps,
            # Episodes end after one step, so the next observation is never used: store it in the next
            # row instead of an array of its own (the target's (1 - done) factor zeroes it anyway).
            "optimize_memory_usage": True,
            "replay_buffer_kwargs": {"handle_timeout_termination": False},
            "seed": cfg.seed,
            "device": self.device,
            "verbose": 0,
        }
        self.model = self.make_model(common)
        self.kl_term.set_policy(self.acting_policy())
        # The actor's optimiser trains the generator: make it the trainer's, so checkpoints save the one
        # in use (the critics' optimiser is saved with the agent's extra state).
        self.optimizer = self.model.actor.optimizer
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.venv._reset_seeds()  # the trainer seeded the env already (see SB3Trainer)

    def make_model(self, common: dict[str, Any]) -> SAC | TD3:
        """The SB3 algorithm over ``self.venv`` with the ``common`` arguments."""
        raise NotImplementedError

    def acting_policy(self) -> nn.Module:
        """The policy whose KL to the reference the KL reward term takes."""
        raise NotImplementedError

    def update(self) -> dict[str, float]:  # noqa: D102
        cfg, model = self.config, self.model
        model._last_obs = None  # reset every update, so a resumed run draws the same episodes
        model.gradient_steps = cfg.gradient_steps if (self.step + 1) % cfg.train_freq == 0 else 0
        model.logger.dump()  # forget the last update's numbers
        model.learn(cfg.batch_size, log_interval=None, reset_num_timesteps=False, progress_bar=False)
        logged = dict(model.logger.name_to_value)
        buffer = model.replay_buffer
        assert buffer is not None
        last = (buffer.pos - 1) % buffer.buffer_size  # the batch just added
        rewards = torch.as_tensor(buffer.rewards[last])
        out = {
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()),
            **{f"sb3/{key}": float(logged.get(f"train/{key}", math.nan)) for key in self.losses},
            "sb3/n_updates": float(model._n_updates),
        }
        noisy = torch.as_tensor(buffer.observations[last], device=self.device)
        with torch.no_grad():
            _, reg = self.regularizers(noisy)
            reg["losses/kl"] = float(self.kl_term.kl(noisy).mean())  # the acting policy's, as rewarded
        return {**out, **reg}

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:  # noqa: D102
        model = self.model
        # The actor's generator is saved with the trainer's policy; safetensors refuses shared tensors.
        tensors = {
            f"sb3.{k}": v.detach().cpu().contiguous()
            for k, v in model.policy.state_dict().items()
            if not k.startswith("actor.generator.")
        }
        tensors.update(_optimizer_tensors(model.critic.optimizer, "critic_optim"))
        buffer = model.replay_buffer
        assert buffer is not None
        rows = buffer.buffer_size if buffer.full else min(buffer.pos + 1, buffer.buffer_size)
        for name in REPLAY_FIELDS:
            tensors[f"replay.{name}"] = torch.from_numpy(np.ascontiguousarray(getattr(buffer, name)[:rows]))
        tensors["torch_rng"] = torch.get_rng_state()
        tensors["reward_aux_rng"] = self.reward_aux.generator.get_state()
        values = {
            "num_timesteps": model.num_timesteps,
            "n_updates": model._n_updates,
            "replay_pos": buffer.pos,
            "replay_full": bool(buffer.full),
            "np_rng": numpy_rng_state(),  # SB3 draws minibatches and TD3's action noise from it
        }
        return tensors, values

    def load_extra_state(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:  # noqa: D102
        model = self.model
        own = {k[4:]: v for k, v in tensors.items() if k.startswith("sb3.")}
        generator = {k: v for k, v in model.policy.state_dict().items() if k.startswith("actor.generator.")}
        model.policy.load_state_dict({**own, **generator})
        _load_optimizer_tensors(model.critic.optimizer, tensors, "critic_optim", self.device)
        buffer = model.replay_buffer
        assert buffer is not None
        pos, full = values["replay_pos"], values["replay_full"]
        if not isinstance(pos, int) or not 0 <= pos < buffer.buffer_size or not isinstance(full, bool):
            raise ValueError(f"replay buffer position {pos!r} (full: {full!r}) for {buffer.buffer_size} rows")
        for name in REPLAY_FIELDS:
            saved, target = tensors[f"replay.{name}"].numpy(), getattr(buffer, name)
            if saved.shape[1:] != target.shape[1:] or len(saved) > len(target):
                raise ValueError(f"replay.{name} has shape {saved.shape}, the buffer {target.shape}")
            target[:] = 0
            target[: len(saved)] = saved
        buffer.pos, buffer.full = pos, full
        torch.set_rng_state(tensors["torch_rng"])
        self.reward_aux.generator.set_state(tensors["reward_aux_rng"])
        set_numpy_rng_state(values["np_rng"])
        model.num_timesteps = int(values["num_timesteps"])
        model._n_updates = int(values["n_updates"])


class SB3SACTrainer(SB3OffPolicyTrainer):
    """Stable-Baselines3 SAC with the generator's logits as the squashed Gaussian's mean."""

    name = "sb3-sac"
    config_class = SB3SACConfig
    config: SB3SACConfig
    losses = ("actor_loss", "critic_loss", "ent_coef")

    def make_model(self, common: dict[str, Any]) -> SAC:  # noqa: D102
        cfg = self.config
        policy_kwargs = {
            "generator": self.policy.generator,
            # The trainer's policy is the logit-space Gaussian with log_std; SAC's pre-tanh Gaussian is
            # half of it (a = sigmoid(2u)), so the actor starts as exactly that policy: KL 0.
            "log_std_init": cfg.log_std - math.log(2.0),
            "learn_std": cfg.learn_std,
            "critic_width": cfg.critic_width,
            "reference": self.reference.generator,
        }
        return GeneratorSAC(
            GeneratorSACPolicy, self.venv, ent_coef=cfg.ent_coef, policy_kwargs=policy_kwargs, **common
        )

    def acting_policy(self) -> nn.Module:  # noqa: D102
        return self.model.actor


class SB3TD3Trainer(SB3OffPolicyTrainer):
    """Stable-Baselines3 TD3 with the generator as the deterministic actor."""

    name = "sb3-td3"
    config_class = SB3TD3Config
    config: SB3TD3Config

    def make_model(self, common: dict[str, Any]) -> TD3:  # noqa: D102
        cfg = self.config
        shape = self.venv.action_space.shape
        assert shape is not None
        # Pixel noise of std exp(log_std) is twice that in SB3's [-1, 1] units: the acting policy is the
        # trainer's pixel-space GaussianPolicy around the generator (before the environment clips).
        sigma = 2 * math.exp(cfg.log_std)
        noise = NormalActionNoise(np.zeros(shape, dtype=np.float32), np.full(shape, sigma, dtype=np.float32))
        return GeneratorTD3(
            GeneratorTD3Policy,
            self.venv,
            action_noise=noise,
            policy_delay=cfg.policy_delay,
            target_policy_noise=cfg.target_policy_noise,
            policy_kwargs={
                "generator": self.policy.generator,
                "critic_width": cfg.critic_width,
                "reference": self.reference.generator,
            },
            **common,
        )

    def acting_policy(self) -> nn.Module:  # noqa: D102
        return self.policy


__all__ = [
    "GeneratorSAC",
    "GeneratorSACActor",
    "GeneratorSACPolicy",
    "GeneratorTD3",
    "GeneratorTD3Actor",
    "GeneratorTD3Policy",
    "ImageCritic",
    "ImageQNetwork",
    "SB3OffPolicyTrainer",
    "SB3SACTrainer",
    "SB3TD3Trainer",
    "half_logits",
]
