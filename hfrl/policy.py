"""The policy view of a generator: a Gaussian around its output, in pixel or logit space.

An RL agent needs a stochastic policy ``pi(a | x)`` with a density; a generator gives one deterministic
output per noisy input ``x``. :class:`GaussianPolicy` puts an isotropic Gaussian around that output:

* ``space="pixel"``: ``a ~ N(g(x), sigma^2 I)``. Samples may leave ``[0, 1]``; the environment clips them,
  so the clipping belongs to the environment and log-probabilities are those of the unclipped sample.
* ``space="logit"``: ``a = sigmoid(y)``, ``y ~ N(logits(x), sigma^2 I)``. Actions always lie in
  ``(0, 1)``; log-probabilities include the change of variables ``-log(a (1 - a))`` per pixel.

``sigma = exp(log_std)`` is one scalar, fixed or learnt. The KL divergence between two such policies on
the same input has a closed form, and it is the same in both spaces (KL is invariant under the sigmoid
bijection): it is the regulariser of KL-regularised fine-tuning (DPOK, Fan et al. 2023, arXiv 2305.16381).
"""

from __future__ import annotations

import copy
import math
import os
from typing import Literal

import torch
from torch import nn
from torch.distributions import (
    Distribution,
    Independent,
    Normal,
    SigmoidTransform,
    TransformedDistribution,
)

from hfrl.checkpoint import load_checkpoint
from hfrl.errors import ConfigError

SPACES = ("pixel", "logit")
DEFAULT_LOG_STD = -2.0
"""``sigma = exp(-2) ~ 0.135`` pixel units: samples stay recognisable digits, yet differ enough between
draws for a reward to tell them apart."""
DEFAULT_EPS = 1e-6
"""Logit-space actions are clamped to ``(eps, 1 - eps)`` before the inverse sigmoid: float32 sigmoid
rounds large logits to exactly 0 or 1, whose logit is infinite."""

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class GaussianPolicy(nn.Module):
    """A stochastic policy around a generator: ``N(g(x), sigma^2)`` in pixel or logit space.

    All methods take a batch of noisy images ``(B, C, H, W)`` and reduce over every non-batch dimension,
    so densities, entropies and divergences are per image, shape ``(B,)``.

    Args:
        generator: Any module mapping ``(B, C, H, W)`` to outputs in ``[0, 1]``; for ``space="logit"`` it
            must also have ``logits(x)`` (every :class:`hfrl.generators.Generator` does).
        space: ``"pixel"`` (Gaussian on pixel values) or ``"logit"`` (Gaussian on logits, then sigmoid).
        log_std: Initial natural log of the standard deviation (pixel units or logit units). Default -2.0.
        learn_std: Whether ``log_std`` is trained (a parameter with ``requires_grad=True``) or fixed.
        eps: Clamp for logit-space actions before the inverse sigmoid. Default 1e-6.

    Example:
        >>> from hfrl.policy import GaussianPolicy
        >>> policy = GaussianPolicy.from_checkpoint()  # the shipped source-domain denoiser
        >>> reference = policy.frozen_copy()
        >>> x = torch.rand(4, 1, 28, 28)
        >>> a = policy.sample(x, generator=torch.Generator().manual_seed(0))
        >>> policy.log_prob(x, a).shape, policy.kl(reference, x).shape
        (torch.Size([4]), torch.Size([4]))
    """

    def __init__(
        self,
        generator: nn.Module,
        space: Literal["pixel", "logit"] = "pixel",
        log_std: float = DEFAULT_LOG_STD,
        learn_std: bool = False,
        eps: float = DEFAULT_EPS,
    ) -> None:
        super().__init__()
        if space not in SPACES:
            raise ConfigError(f"unknown policy space {space!r}; expected one of {', '.join(SPACES)}")
        if space == "logit" and not callable(getattr(generator, "logits", None)):
            raise ConfigError(
                f"space='logit' needs a generator with a logits() method; {type(generator).__name__} has none"
            )
        if not math.isfinite(float(log_std)):
            raise ConfigError(f"log_std must be a finite number, got {log_std}")
        if not 0.0 < eps < 0.5:
            raise ConfigError(f"eps must be in (0, 0.5), got {eps}")
        self.generator = generator
        self.space = space
        self.eps = float(eps)
        self.log_std = nn.Parameter(torch.tensor(float(log_std)), requires_grad=learn_std)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | torch.device = "cpu",
        space: Literal["pixel", "logit"] = "pixel",
        log_std: float = DEFAULT_LOG_STD,
        learn_std: bool = False,
    ) -> GaussianPolicy:
        """A policy around a generator checkpoint (by default the shipped ``denoiser_source``).

        Args:
            path: A generator checkpoint (see :func:`hfrl.checkpoint.load_checkpoint`); ``None`` for the
                shipped source-domain denoiser.
            device: Where to put the generator.
            space: See the class.
            log_std: See the class.
            learn_std: See the class.
        """
        from hfrl.judges import asset_path  # judges imports classifiers; keep policy import light

        generator, _ = load_checkpoint(path or asset_path("denoiser_source"), kind="generator", device=device)
        return cls(generator, space=space, log_std=log_std, learn_std=learn_std).to(device)

    @property
    def learn_std(self) -> bool:
        """Whether ``log_std`` is trained."""
        return bool(self.log_std.requires_grad)

    @property
    def std(self) -> torch.Tensor:
        """Scalar standard deviation ``exp(log_std)``."""
        return self.log_std.exp()

    def frozen_copy(self) -> GaussianPolicy:
        """A deep copy with every parameter frozen and in eval mode: the reference for a KL penalty."""
        ref = copy.deepcopy(self)
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref.eval()

    def loc(self, noisy: torch.Tensor) -> torch.Tensor:
        """Mean of the Gaussian in the policy's space: pixel outputs or logits, ``(B, C, H, W)``."""
        return self.generator(noisy) if self.space == "pixel" else self.generator.logits(noisy)

    def to_space(self, action: torch.Tensor) -> torch.Tensor:
        """Map actions ``(B, C, H, W)`` into the policy's space (identity, or logit of the clamped action)."""
        if self.space == "pixel":
            return action
        return torch.logit(action.clamp(self.eps, 1.0 - self.eps))

    def base_distribution(self, noisy: torch.Tensor) -> Normal:
        """Element-wise ``Normal(loc, std)`` in the policy's space (batch shape ``(B, C, H, W)``)."""
        loc = self.loc(noisy)
        return Normal(loc, self.std.to(loc.dtype).expand_as(loc), validate_args=False)

    def distribution(self, noisy: torch.Tensor) -> Distribution:
        """The action distribution as a ``torch.distributions`` object with event shape ``(C, H, W)``.

        Pixel space: ``Independent(Normal)``; logit space: ``Independent(TransformedDistribution(Normal,
        SigmoidTransform))``. Useful for interoperability; the methods below are faster and clamp safely.
        """
        base: Distribution = self.base_distribution(noisy)
        if self.space == "logit":
            base = TransformedDistribution(base, [SigmoidTransform()], validate_args=False)
        return Independent(base, noisy.ndim - 1, validate_args=False)

    def forward(self, noisy: torch.Tensor) -> Distribution:
        """Same as :meth:`distribution`."""
        return self.distribution(noisy)

    def sample(self, noisy: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one action per input, reparameterised (differentiable w.r.t. the generator and log-std).

        Call it under ``torch.no_grad()`` for rollouts.

        Args:
            noisy: ``(B, C, H, W)`` observations.
            generator: Source of randomness (on the CPU or on ``noisy``'s device); global RNG when ``None``.

        Returns:
            ``(B, C, H, W)`` actions: unclipped in pixel space (the environment clips), in ``(0, 1)`` in
            logit space.
        """
        loc = self.loc(noisy)
        device = generator.device if generator is not None else loc.device
        z = torch.randn(loc.shape, generator=generator, device=device, dtype=loc.dtype).to(loc.device)
        y = loc + self.std.to(loc.dtype) * z
        return y if self.space == "pixel" else torch.sigmoid(y)

    def log_prob(self, noisy: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density of ``action`` under the policy at ``noisy``, summed over pixels.

        Args:
            noisy: ``(B, C, H, W)`` observations.
            action: ``(B, C, H, W)`` actions as sampled (pixel space: before the environment clips them;
                logit space: values in ``[0, 1]``, clamped to ``(eps, 1 - eps)``).

        Returns:
            ``(B,)`` log-densities (w.r.t. Lebesgue measure on actions).
        """
        y = self.to_space(action)
        logp = self.base_distribution(noisy).log_prob(y)
        if self.space == "logit":
            a = action.clamp(self.eps, 1.0 - self.eps)
            logp = logp - torch.log(a) - torch.log1p(-a)  # |dy/da| = 1 / (a (1 - a))
        return logp.flatten(1).sum(1)

    def entropy(self, noisy: torch.Tensor) -> torch.Tensor:
        """Differential entropy of the Gaussian in the policy's space, summed over pixels, ``(B,)``.

        In pixel space this is the action entropy. In logit space it is the entropy of the pre-sigmoid
        Gaussian: the action entropy differs from it by ``E[log a (1 - a)]``, which has no closed form
        (this is what PPO-style entropy bonuses use for squashed Gaussians).
        """
        pixels = noisy[0].numel()
        per_pixel = 0.5 + _HALF_LOG_2PI + self.log_std
        return (per_pixel * pixels).expand(noisy.shape[0]).to(noisy.dtype)

    def kl(self, reference: GaussianPolicy, noisy: torch.Tensor) -> torch.Tensor:
        """Closed-form ``KL(self(. | x) || reference(. | x))`` per image, ``(B,)``.

        The reference is a constant: no gradient flows into it. Both policies must use the same space;
        the value is then exact in either space (KL is invariant under the sigmoid bijection).

        Args:
            reference: The policy to stay close to (usually a :meth:`frozen_copy` of the initial one).
            noisy: ``(B, C, H, W)`` observations.
        """
        if reference.space != self.space:
            raise ConfigError(f"KL between a {self.space}-space and a {reference.space}-space policy")
        loc = self.loc(noisy)
        with torch.no_grad():
            ref_loc = reference.loc(noisy.to(_device(reference, noisy))).to(loc.device)
            ref_log_std = reference.log_std.detach().to(loc.device)
        log_std = self.log_std.to(loc.device)
        var, ref_var = (2 * log_std).exp(), (2 * ref_log_std).exp()
        per_pixel = ref_log_std - log_std + (var + (loc - ref_loc) ** 2) / (2 * ref_var) - 0.5
        return per_pixel.flatten(1).sum(1)

    def mode(self, noisy: torch.Tensor) -> torch.Tensor:
        """The deterministic action: the generator's output ``(B, C, H, W)`` in ``[0, 1]``.

        In pixel space it is the Gaussian's mean; in logit space ``sigmoid(loc)``, the median of the
        logit-normal action distribution.
        """
        return self.generator(noisy)


def _device(module: nn.Module, fallback: torch.Tensor) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else fallback.device
