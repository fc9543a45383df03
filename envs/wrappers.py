"""Reward terms, and the wrappers that add them to a denoising environment's reward.

A *term* does one job: it turns a batch of finished episodes (a :class:`~hfrl.envs.denoise.Transition`)
into a signed, weighted reward contribution ``(B,)``. A wrapper adds one term to the reward and reports
it as ``info["reward_components"][term.name]``; wrappers compose, and the reward always equals the sum
of the components. With them, any RL algorithm — Stable-Baselines3's included — optimises the
regularised objective of the design, ``r(x, a) - kl * KL(pi || pi_ref) - consistency - aux``, without
custom code.

* :class:`RewardModelTerm`: ``coef * r(x, a)`` from a reward model (or any reward callable).
* :class:`KLTerm`: ``-coef * KL(pi(.|x) || pi_ref(.|x))`` to a reference policy.
* :class:`ConsistencyTerm`: ``-coef * mean((a - g0(x))^2)`` to the frozen initial generator's output.
* :class:`SourceAuxTerm`: ``-coef * MSE`` of the current policy on noisy source-domain images.

:class:`RewardTermWrapper` adds a term to :class:`~hfrl.envs.denoise.DenoiseEnv` (a
``gymnasium.Wrapper``); :class:`VectorRewardTermWrapper` adds it to
:class:`~hfrl.envs.vector.BatchedDenoiseEnv`, NumPy and torch faces alike; :func:`add_reward_terms`
picks the right one::

    env = add_reward_terms(gym.make("hfrl/Denoise-v0", reward=my_reward_model),
                           KLTerm(reference, coef=0.1), ConsistencyTerm(initial_generator, coef=1.0))
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv, VectorWrapper
from torch import nn

from hfrl.envs.denoise import DenoiseEnv, DenoiseTask, Transition
from hfrl.envs.rewards import RewardSpec, call_reward, module_device, resolve_reward
from hfrl.envs.vector import BatchedDenoiseEnv, SeedSpec
from hfrl.errors import ConfigError
from hfrl.noise import NoiseModel
from hfrl.policy import GaussianPolicy

EnvT = TypeVar("EnvT", gym.Env, VectorEnv)


class RewardTerm(ABC):
    """One additive reward component computed from a batch of finished episodes.

    Args:
        coef: Weight of the term (finite).
        name: Key in ``info["reward_components"]``.
    """

    def __init__(self, coef: float, name: str) -> None:
        if not math.isfinite(float(coef)):
            raise ConfigError(f"{type(self).__name__}: coef must be a finite number, got {coef}")
        self.coef = float(coef)
        self.name = name

    def bind(self, task: DenoiseTask) -> None:  # noqa: B027 - optional hook
        """Called once when a wrapper adds the term to an environment (default: nothing)."""

    def reset(self, seed: int) -> None:  # noqa: B027 - optional hook
        """Called when the environment is reset with a seed, to reseed the term's own randomness."""

    def set_policy(self, policy: nn.Module | None) -> None:  # noqa: B027 - optional hook
        """Tell the term which policy acts (terms that do not need it ignore it)."""

    @abstractmethod
    def __call__(self, transition: Transition) -> torch.Tensor:
        """The signed, weighted contribution ``(B,)`` float32 on the transition's device."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(coef={self.coef}, name={self.name!r})"


class RewardModelTerm(RewardTerm):
    """``coef * r(noisy, output)`` from a reward model, as an added term.

    Useful to combine several reward models, or to build the environment with ``reward=None`` and add the
    reward as a wrapper like every other component.

    Args:
        reward: Anything :func:`~hfrl.envs.rewards.resolve_reward` accepts (``"labeler"``, a checkpoint
            path, an ``nn.Module`` or a callable ``(noisy, output) -> (B,)``).
        coef: Weight (default 1).
        name: Component name (default ``"reward_model"``; the environment's own reward uses that name
            too, so pick another when both are present).
    """

    def __init__(self, reward: RewardSpec, coef: float = 1.0, name: str = "reward_model") -> None:
        super().__init__(coef, name)
        if reward is None:
            raise ConfigError("RewardModelTerm needs a reward, got None")
        self.spec = reward
        self.reward = reward if callable(reward) else None

    def bind(self, task: DenoiseTask) -> None:
        """Resolve a string reward on the environment's device."""
        if self.reward is None:
            self.reward = resolve_reward(self.spec, task.device)

    def __call__(self, transition: Transition) -> torch.Tensor:  # noqa: D102
        if self.reward is None:
            raise ConfigError(f"{self!r} was never bound: add it to an environment with a wrapper")
        ep = transition.episodes
        return self.coef * call_reward(self.reward, ep.noisy, transition.output, ep.clean, ep.classes)


def gaussian_kl(
    loc: torch.Tensor, log_std: torch.Tensor, ref_loc: torch.Tensor, ref_log_std: torch.Tensor
) -> torch.Tensor:
    """Closed-form ``KL(N(loc, diag(std^2)) || N(ref_loc, diag(ref_std^2)))`` per image, ``(B,)``, always >= 0.

    Args:
        loc: ``(B, ...)`` means of the first Gaussian.
        log_std: Its log standard deviations, broadcastable to ``loc`` (a scalar or one per element).
        ref_loc: ``(B, ...)`` means of the reference.
        ref_log_std: The reference's log standard deviations, broadcastable to ``loc``.
    """
    var, ref_var = (2 * log_std).exp(), (2 * ref_log_std).exp()
    per_element = ref_log_std - log_std + (var + (loc - ref_loc) ** 2) / (2 * ref_var) - 0.5
    return per_element.expand_as(loc).flatten(1).sum(1)


def _is_sb3_policy(policy: object) -> bool:
    """A Stable-Baselines3 policy (duck-typed, so that this module does not import SB3)."""
    return callable(getattr(policy, "get_distribution", None)) and isinstance(policy, nn.Module)


def _is_sb3_squashed_actor(policy: object) -> bool:
    """A Stable-Baselines3 SAC actor (duck-typed: it has ``get_action_dist_params``)."""
    return callable(getattr(policy, "get_action_dist_params", None)) and isinstance(policy, nn.Module)


def _check_squashed_actor(policy: nn.Module) -> None:
    """Refuse a SAC actor whose squashed Gaussian is not a logit-space Gaussian over ``[0, 1]`` pixels.

    Raises:
        ConfigError: for gSDE noise (state-dependent) or an action space other than ``[0, 1]``.
    """
    if getattr(policy, "use_sde", False):
        raise ConfigError(
            "KLTerm needs a SAC actor with a diagonal Gaussian; this one uses gSDE (state-dependent noise, "
            "no closed-form KL to the reference)"
        )
    space = getattr(policy, "action_space", None)
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if low is None or high is None or not (np.all(low == 0) and np.all(high == 1)):
        raise ConfigError(
            "KLTerm: a SAC actor's squashed Gaussian is a Gaussian over logits only for actions in [0, 1] "
            f"(SB3 maps tanh onto the action space); this one acts in {space}"
        )


def _sb3_squashed_gaussian(policy: nn.Module, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-std ``(B, C, H, W)`` of a SAC actor's Gaussian over logits.

    SB3 maps the actor's ``tanh(u)``, ``u ~ N(m, s^2)``, onto ``[0, 1]`` as ``(1 + tanh(u)) / 2 =
    sigmoid(2u)``: the action's logit ``2u`` is ``N(2m, (2s)^2)``, a logit-space Gaussian.
    """
    device = module_device(policy) or noisy.device
    mean, log_std, _ = policy.get_action_dist_params(noisy.to(device))  # type: ignore[operator]
    loc = (2 * mean).reshape(noisy.shape)
    return loc, (log_std + math.log(2.0)).expand_as(mean).reshape(noisy.shape)


def _sb3_gaussian(policy: nn.Module, noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-std ``(B, C, H, W)`` of an SB3 policy's diagonal Gaussian over actions (no squashing).

    Raises:
        ConfigError: for another action distribution (squashed, state-dependent, categorical...).
    """
    from stable_baselines3.common.distributions import DiagGaussianDistribution

    device = module_device(policy) or noisy.device
    dist = policy.get_distribution(noisy.to(device))  # type: ignore[operator]
    if type(dist) is not DiagGaussianDistribution:
        raise ConfigError(
            f"KLTerm needs a policy whose actions are a diagonal Gaussian; this SB3 policy's are a "
            f"{type(dist).__name__} (no closed-form KL to the reference)"
        )
    normal = dist.distribution
    return normal.mean.reshape(noisy.shape), normal.stddev.log().reshape(noisy.shape)


class KLTerm(RewardTerm):
    """``-coef * KL(pi(.|x) || pi_ref(.|x))``: stay close to a reference policy (KL-regularised RL).

    The KL is the closed form between two Gaussians, so it depends on the input only, not on the action
    drawn, and it is never negative: the term never rewards. It needs the acting policy
    (``policy=`` or :meth:`set_policy`, which the wrappers pass on to every term):

    * a :class:`~hfrl.policy.GaussianPolicy` in the reference's space (:meth:`GaussianPolicy.kl`);
    * a Stable-Baselines3 policy with a diagonal Gaussian over actions (``ActorCriticPolicy``,
      ``"MlpPolicy"``, :class:`~hfrl.agents.sb3.GeneratorActorCriticPolicy`): its current mean and learnt
      per-pixel log-std, against a pixel-space reference (``venv.set_policy(model.policy)`` once the SB3
      model is built);
    * a Stable-Baselines3 SAC actor over ``[0, 1]`` actions (``model.actor``,
      :class:`~hfrl.agents.sb3_offpolicy.GeneratorSACActor`): its tanh-squashed Gaussian, which SB3 maps
      onto ``[0, 1]`` as a sigmoid, is a Gaussian over logits, against a logit-space reference.

    Without one the term refuses to score (the KL of an unknown density has no value; the former sample
    estimate ``-log pi_ref(a|x) - H(pi_ref)`` went negative, i.e. rewarded, near the reference's mean).

    Args:
        reference: The reference policy, usually ``GaussianPolicy(initial_generator).frozen_copy()``.
        coef: Weight ``kl`` of the penalty (default 0.1).
        policy: The acting policy, if known now (else call :meth:`set_policy` before stepping).
        name: Component name (default ``"kl"``).
    """

    def __init__(
        self,
        reference: GaussianPolicy,
        coef: float = 0.1,
        policy: nn.Module | None = None,
        name: str = "kl",
    ) -> None:
        super().__init__(coef, name)
        if not isinstance(reference, GaussianPolicy):
            raise ConfigError(f"KLTerm needs a GaussianPolicy reference, got {type(reference).__name__}")
        self.reference = reference
        self.policy: nn.Module | None = None
        self.set_policy(policy)

    def set_policy(self, policy: nn.Module | None) -> None:
        """Take the KL to ``policy``: a :class:`GaussianPolicy` or an SB3 policy (``None``: unknown)."""
        if policy is not None:
            if isinstance(policy, GaussianPolicy):
                if policy.space != self.reference.space:
                    raise ConfigError(
                        f"KLTerm: a {policy.space}-space policy and a {self.reference.space}-space reference"
                    )
            elif _is_sb3_squashed_actor(policy):
                if self.reference.space != "logit":
                    raise ConfigError(
                        "KLTerm: an SB3 SAC actor's tanh-squashed Gaussian is a Gaussian over logits; the "
                        f"reference must be a logit-space GaussianPolicy, not {self.reference.space}-space"
                    )
                _check_squashed_actor(policy)
            elif _is_sb3_policy(policy):
                if self.reference.space != "pixel":
                    raise ConfigError(
                        "KLTerm: an SB3 policy is a Gaussian over pixels; the reference must be a "
                        f"pixel-space GaussianPolicy, not {self.reference.space}-space"
                    )
            else:
                raise ConfigError(
                    f"KLTerm needs a GaussianPolicy or a Stable-Baselines3 policy, got {type(policy).__name__}"
                )
        self.policy = policy

    def kl(self, noisy: torch.Tensor) -> torch.Tensor:
        """``KL(pi(.|x) || pi_ref(.|x))`` per image, ``(B,)`` on the policy's device (unweighted, >= 0).

        Raises:
            ConfigError: when the acting policy is unknown.
        """
        policy = self.policy
        if policy is None:
            raise ConfigError(
                "KLTerm does not know the acting policy, so KL(pi || pi_ref) has no value: call "
                "set_policy(policy) on the environment (a GaussianPolicy, or an SB3 model's .policy)"
            )
        if isinstance(policy, GaussianPolicy):
            return policy.kl(self.reference, noisy.to(module_device(policy) or noisy.device))
        if _is_sb3_squashed_actor(policy):
            loc, log_std = _sb3_squashed_gaussian(policy, noisy)
            ref_device = module_device(self.reference) or loc.device
            ref_loc = self.reference.loc(noisy.to(ref_device)).to(loc)  # the reference's logits
            return gaussian_kl(loc, log_std, ref_loc, self.reference.log_std.detach().to(loc))
        loc, log_std = _sb3_gaussian(policy, noisy)
        ref_device = module_device(self.reference) or loc.device
        ref_loc = self.reference.loc(noisy.to(ref_device)).to(loc)
        ref_log_std = self.reference.log_std.detach().to(loc)
        return gaussian_kl(loc, log_std, ref_loc, ref_log_std)

    @torch.no_grad()
    def __call__(self, transition: Transition) -> torch.Tensor:  # noqa: D102
        out_device = transition.output.device
        kl = self.kl(transition.noisy)
        return -self.coef * kl.to(device=out_device, dtype=torch.float32)


class ConsistencyTerm(RewardTerm):
    """``-coef * mean((output - g0(x))^2)``: stay consistent with the frozen initial generator's output.

    The seed paper's consistency term: the mean squared pixel distance between the action (after
    clipping) and what the initial generator ``g0`` outputs for the same noisy input (clipped to
    ``[0, 1]`` alike, so a generator whose raw output leaves the image range is not penalised for it).

    Args:
        initial: The frozen initial generator (or a :class:`GaussianPolicy` around it: its generator is
            used). Called without gradients; its train/eval mode is left alone.
        coef: Weight (default 1).
        name: Component name (default ``"consistency"``).
    """

    def __init__(self, initial: nn.Module, coef: float = 1.0, name: str = "consistency") -> None:
        super().__init__(coef, name)
        self.initial = initial.generator if isinstance(initial, GaussianPolicy) else initial

    @torch.no_grad()
    def __call__(self, transition: Transition) -> torch.Tensor:  # noqa: D102
        output = transition.output
        target = self.initial(transition.noisy.to(module_device(self.initial) or output.device))
        mse = (output - target.to(output).clamp(0, 1)).pow(2).flatten(1).mean(1)
        return -self.coef * mse


class SourceAuxTerm(RewardTerm):
    """``-coef * MSE`` of the current policy on a fresh batch of noisy *source-domain* images.

    Fine-tuning on the target domain should not forget the source domain; the seed paper keeps it with an
    auxiliary loss on source images, whose clean versions may be used (that is the skill being kept).
    An episode here is one target image, so this term is a property of the policy, not of the action:
    every step it evaluates the policy (:meth:`set_policy`) on ``batch_size`` noisy source images and adds
    the same value to every episode of the batch, reported as ``info["reward_components"]["aux"]``.

    Because it does not depend on the action, a policy-gradient method gets no gradient from it (it acts
    like a baseline shift): it monitors retention and makes the reported return the full objective.
    Gradient-based agents (``hfrl.agents``) optimise the same quantity directly with :meth:`loss`.

    Args:
        coef: Weight ``aux`` (default 1).
        policy: The acting policy (a :class:`GaussianPolicy`, whose :meth:`~GaussianPolicy.mode` is used, an
            SB3 policy, whose distribution's mode is used, an SB3 SAC actor over ``[0, 1]``, whose
            deterministic action is used, or a generator module); can be set later with :meth:`set_policy`.
        images: Clean source images ``(M, C, H, W)``; default: the environment's source-domain train split.
        noise: Noise model; default: the environment's.
        batch_size: Source images per step (default 16).
        seed: Seed of the term's own draws (reseeded by ``reset(seed=...)``).
        name: Component name (default ``"aux"``).
    """

    def __init__(
        self,
        coef: float = 1.0,
        policy: nn.Module | None = None,
        images: torch.Tensor | None = None,
        noise: NoiseModel | None = None,
        batch_size: int = 16,
        seed: int = 0,
        name: str = "aux",
    ) -> None:
        super().__init__(coef, name)
        if int(batch_size) < 1:
            raise ConfigError(f"SourceAuxTerm: batch_size must be at least 1, got {batch_size}")
        self.policy = policy
        self.images = images.detach().cpu().float() if images is not None else None
        self.noise = noise
        self.batch_size = int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))

    def bind(self, task: DenoiseTask) -> None:
        """Take the environment's source-domain train images and noise model unless given."""
        if self.images is None:
            self.images = task.source_images("train")
        if self.noise is None:
            self.noise = task.noise

    def reset(self, seed: int) -> None:
        """Reseed the draws of source images and their noise."""
        self.generator.manual_seed(int(seed))

    def set_policy(self, policy: nn.Module | None) -> None:
        """Evaluate ``policy`` from now on."""
        self.policy = policy

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh batch ``(noisy, clean)``, each ``(batch_size, 1, H, W)`` on the CPU."""
        if self.images is None or self.noise is None:
            raise ConfigError("SourceAuxTerm has no source images: add it to an environment or pass images=")
        index = torch.randint(len(self.images), (self.batch_size,), generator=self.generator)
        clean = self.images[index]
        return self.noise(clean, self.generator), clean

    def loss(self, policy: nn.Module | None = None) -> torch.Tensor:
        """The auxiliary loss ``MSE(policy(noisy_source), clean_source)``, differentiable (scalar).

        Args:
            policy: The policy to evaluate (default: the one set).
        """
        policy = policy if policy is not None else self.policy
        if policy is None:
            raise ConfigError("SourceAuxTerm needs the acting policy: call set_policy(policy) on the wrapper")
        noisy, clean = self.sample()
        device = module_device(policy) or torch.device("cpu")
        noisy, clean = noisy.to(device), clean.to(device)
        if isinstance(policy, GaussianPolicy):
            output = policy.mode(noisy)
        elif _is_sb3_squashed_actor(policy):  # its deterministic action, tanh(mean), mapped onto [0, 1]
            output = (policy(noisy, deterministic=True).reshape(noisy.shape) + 1) / 2
        elif _is_sb3_policy(policy):  # its deterministic action: the Gaussian's mean
            output = policy.get_distribution(noisy).mode().reshape(noisy.shape)  # type: ignore[operator]
        else:
            output = policy(noisy)
        return (output - clean).pow(2).mean()

    @torch.no_grad()
    def __call__(self, transition: Transition) -> torch.Tensor:  # noqa: D102
        value = self.loss().to(device=transition.output.device, dtype=torch.float32)
        return (-self.coef * value).expand(transition.output.shape[0]).clone()


def _add_component(components: dict[str, Any], name: str, value: Any) -> None:
    if name in components:
        raise ConfigError(
            f"two reward components are named {name!r} (the environment's reward is 'reward_model'); "
            "give the term another name"
        )
    components[name] = value


class RewardTermWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Add one :class:`RewardTerm` to the reward of a :class:`~hfrl.envs.denoise.DenoiseEnv`.

    ``step`` returns ``reward + term`` and sets ``info["reward_components"][term.name]``; ``reset(seed=s)``
    reseeds the term. Stack several for several terms.

    Args:
        env: A (possibly wrapped) ``hfrl/Denoise-v0`` environment.
        term: The term to add.
    """

    def __init__(self, env: gym.Env, term: RewardTerm) -> None:
        # Recorded so that env.spec can rebuild the wrapper; the term is shared, not copied.
        gym.utils.RecordConstructorArgs.__init__(self, term=term, _disable_deepcopy=True)
        super().__init__(env)
        if not isinstance(env.unwrapped, DenoiseEnv):
            raise ConfigError(f"RewardTermWrapper wraps hfrl/Denoise-v0 environments, got {env.unwrapped!r}")
        self.term = term
        term.bind(env.unwrapped.task)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the environment (and reseed the term when ``seed`` is given)."""
        if seed is not None:
            self.term.reset(seed)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step, then add the term to the reward and to ``info["reward_components"]``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        value = float(self.term(self.env.unwrapped.last_transition)[0])
        _add_component(info.setdefault("reward_components", {}), self.term.name, value)
        return obs, float(reward) + value, terminated, truncated, info

    def set_policy(self, policy: nn.Module | None) -> None:
        """Tell this term and every term further in which policy acts."""
        self.term.set_policy(policy)
        if self.env.has_wrapper_attr("set_policy"):
            self.env.get_wrapper_attr("set_policy")(policy)


class VectorRewardTermWrapper(VectorWrapper, gym.utils.RecordConstructorArgs):
    """Add one :class:`RewardTerm` to the rewards of a :class:`~hfrl.envs.vector.BatchedDenoiseEnv`.

    Works on both faces: ``step`` (NumPy, the term under ``infos["final_info"]["reward_components"]``
    with its ``_name`` mask) and ``step_torch`` (tensors). ``reset(seed=s)`` reseeds the term with ``s``
    (the first seed of a list). The torch face passes through hfrl wrappers only: put other Gymnasium
    vector wrappers outside them.

    Args:
        env: A batched ``hfrl/Denoise-v0`` environment, bare or wrapped by hfrl reward-term wrappers.
        term: The term to add.
    """

    def __init__(self, env: VectorEnv, term: RewardTerm) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, term=term, _disable_deepcopy=True)
        super().__init__(env)
        if not isinstance(env.unwrapped, BatchedDenoiseEnv):
            raise ConfigError(f"VectorRewardTermWrapper wraps BatchedDenoiseEnv, got {env.unwrapped!r}")
        self.term = term
        term.bind(env.unwrapped.task)

    def _reseed(self, seed: SeedSpec) -> None:
        if isinstance(seed, (int, np.integer)):
            self.term.reset(int(seed))
        elif seed is not None:
            first = next((s for s in seed if s is not None), None)
            if first is not None:
                self.term.reset(int(first))

    def _value(self) -> torch.Tensor:
        transition = self.env.unwrapped.last_transition
        assert transition is not None  # a step just happened
        return self.term(transition)

    def reset(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the batch (and reseed the term)."""
        self._reseed(seed)
        return self.env.reset(seed=seed, options=options)

    def reset_torch(
        self, *, seed: SeedSpec = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Torch-face reset (see :meth:`BatchedDenoiseEnv.reset_torch`)."""
        self._reseed(seed)
        return self._inner("reset_torch")(seed=seed, options=options)

    def step(
        self, actions: np.ndarray, *, autoreset: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """NumPy-face step with the term added.

        ``autoreset=False`` (see :meth:`BatchedDenoiseEnv.step_torch`) needs hfrl wrappers all the way down.
        """
        if autoreset:
            obs, reward, terminated, truncated, info = self.env.step(actions)
        else:
            obs, reward, terminated, truncated, info = self.env.step(actions, autoreset=False)  # type: ignore[call-arg]
        value = self._value().cpu().numpy().astype(np.float64)
        components = info["final_info"].setdefault("reward_components", {})
        _add_component(components, self.term.name, value)
        components[f"_{self.term.name}"] = np.ones(len(value), dtype=np.bool_)
        return obs, reward + value, terminated, truncated, info

    def step_torch(
        self, actions: torch.Tensor | np.ndarray, *, autoreset: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Torch-face step with the term added (``autoreset`` as in :meth:`BatchedDenoiseEnv.step_torch`)."""
        obs, reward, terminated, truncated, info = self._inner("step_torch")(actions, autoreset=autoreset)
        value = self._value()
        _add_component(info["final_info"].setdefault("reward_components", {}), self.term.name, value)
        return obs, reward + value, terminated, truncated, info

    def set_policy(self, policy: nn.Module | None) -> None:
        """Tell this term and every term further in which policy acts."""
        self.term.set_policy(policy)
        inner = getattr(self.env, "set_policy", None)
        if inner is not None:
            inner(policy)

    def _inner(self, method: str) -> Any:
        fn = getattr(self.env, method, None)
        if fn is None:
            raise AttributeError(
                f"{method} needs hfrl wrappers all the way down; {type(self.env).__name__} has none — "
                "put other vector wrappers outside the reward-term wrappers"
            )
        return fn


def add_reward_terms(env: EnvT, *terms: RewardTerm) -> EnvT:
    """Wrap ``env`` with one reward-term wrapper per term, innermost first.

    Args:
        env: A ``hfrl/Denoise-v0`` environment, single (``gymnasium.make``) or batched
            (``gymnasium.make_vec``).
        *terms: The terms to add.

    Returns:
        The wrapped environment (:class:`RewardTermWrapper` or :class:`VectorRewardTermWrapper` chain).
    """
    for term in terms:
        env = (
            VectorRewardTermWrapper(env, term) if isinstance(env, VectorEnv) else RewardTermWrapper(env, term)
        )
    return env


__all__: Sequence[str] = [
    "ConsistencyTerm",
    "KLTerm",
    "RewardModelTerm",
    "RewardTerm",
    "RewardTermWrapper",
    "SourceAuxTerm",
    "VectorRewardTermWrapper",
    "add_reward_terms",
    "gaussian_kl",
]
