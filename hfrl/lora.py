"""LoRA-style adapters: fine-tune a network through low-rank updates of its convolutions and linear layers.

Hu et al. 2021 (arXiv 2106.09685): a frozen layer ``W`` becomes ``W + (alpha / r) * B A`` with ``A`` of rank
``r`` and ``B`` initialised to zero, so the adapted network starts as the base one and only ``A`` and ``B``
train. HERO (arXiv 2410.05116) and DDPO fine-tune diffusion models this way; here it is the
``adapter="lora"`` option of the online diffusion methods (:mod:`hfrl.agents.diffusion`).

For a convolution ``A`` is a convolution with the layer's kernel, stride and padding into ``r`` channels and
``B`` a 1x1 convolution out of them, so ``B A`` is again a convolution of the layer's shape and
:func:`merge_lora` folds it into the layer.

The adapters are a module of their own (:class:`LoRAAdapters`, checkpoint kind ``lora``), saved without
the base weights (rank r costs about r (c_in k^2 + c_out) numbers per layer), which :func:`attach_lora` puts
back onto any copy of the base model::

    model = load_ddpm("ddpm_digits")
    adapters = add_lora(model, rank=4)             # base frozen, adapters trainable
    ...                                            # train model (only adapters.parameters() move)
    save_checkpoint("run/adapters", adapters, kind=LORA_KIND, config=adapters.config_dict())
    plain = merge_lora(model)                      # an ordinary UNet2D, same outputs
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from hfrl.errors import ConfigError

LORA_KIND = "lora"
"""Checkpoint kind of :class:`LoRAAdapters`."""


def _key(name: str) -> str:
    # ModuleDict keys may not hold dots.
    return name.replace(".", "__")


class LoRAPair(nn.Module):
    """The low-rank update ``(alpha / r) * B A`` of one layer.

    Args:
        spec: ``{"type": "conv" | "linear", "in": int, "out": int}`` plus ``kernel``, ``stride`` and
            ``padding`` for convolutions.
        rank: ``r``.
        alpha: Scale numerator: the update is ``alpha / r`` times ``B A``.
        generator: Randomness of ``A``'s initial values (the global generator when ``None``).
    """

    def __init__(
        self, spec: dict[str, Any], rank: int, alpha: float, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.scale = alpha / rank
        if spec["type"] == "conv":
            self.down: nn.Module = nn.Conv2d(
                spec["in"], rank, spec["kernel"], stride=spec["stride"], padding=spec["padding"], bias=False
            )
            self.up: nn.Module = nn.Conv2d(rank, spec["out"], 1, bias=False)
        elif spec["type"] == "linear":
            self.down = nn.Linear(spec["in"], rank, bias=False)
            self.up = nn.Linear(rank, spec["out"], bias=False)
        else:
            raise ValueError(f"unknown LoRA layer type {spec['type']!r}")
        # A as in nn.Linear's default init, B = 0: the adapted layer starts as the base layer.
        nn.init.kaiming_uniform_(self.down.weight, a=5**0.5, generator=generator)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The update's output for the layer's input ``x``."""
        return self.up(self.down(x)) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """``(alpha / r) * B A`` as a weight of the base layer's shape."""
        up = self.up.weight.flatten(1)  # (out, r)
        if self.spec["type"] == "conv":
            return torch.einsum("or,rikl->oikl", up, self.down.weight) * self.scale  # (out, in, k, k)
        return up @ self.down.weight * self.scale  # (out, in)


class LoRALayer(nn.Module):
    """A frozen base layer plus its :class:`LoRAPair`; ``enabled = False`` gives the base layer alone."""

    def __init__(self, base: nn.Conv2d | nn.Linear, pair: LoRAPair) -> None:
        super().__init__()
        self.base = base
        self.pair = pair
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.base(x)
        return out + self.pair(x) if self.enabled else out


class LoRAAdapters(nn.Module):
    """Every adapter of a model, by the dotted name of the layer it adapts (the ``lora`` checkpoint kind).

    Args:
        layers: Layer name -> spec (see :class:`LoRAPair`).
        rank: ``r`` of every adapter.
        alpha: Scale numerator of every adapter.
        generator: Randomness of the initial values (the global generator when ``None``).
    """

    def __init__(
        self,
        layers: dict[str, dict[str, Any]],
        rank: int,
        alpha: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.layers = {name: dict(spec) for name, spec in layers.items()}
        self.rank = int(rank)
        self.alpha = float(alpha)
        self.pairs = nn.ModuleDict(
            {_key(n): LoRAPair(s, self.rank, self.alpha, generator) for n, s in layers.items()}
        )

    def pair(self, name: str) -> LoRAPair:
        """The adapter of layer ``name``."""
        return self.pairs[_key(name)]  # type: ignore[return-value]

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint config (see :func:`build_lora`)."""
        return {"rank": self.rank, "alpha": self.alpha, "layers": self.layers}


def build_lora(config: dict[str, Any]) -> LoRAAdapters:
    """Build zero-update :class:`LoRAAdapters` from a checkpoint config (the ``lora`` checkpoint kind)."""
    unknown = set(config) - {"rank", "alpha", "layers"}
    if unknown:
        raise ValueError(f"unknown LoRA config keys {sorted(unknown)}")
    return LoRAAdapters(config["layers"], config["rank"], config["alpha"])


def _spec(layer: nn.Module) -> dict[str, Any] | None:
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.dilation != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
            return None
        return {
            "type": "conv", "in": layer.in_channels, "out": layer.out_channels, "kernel": layer.kernel_size[0],
            "stride": layer.stride[0], "padding": layer.padding[0],
        }  # fmt: skip
    if isinstance(layer, nn.Linear):
        return {"type": "linear", "in": layer.in_features, "out": layer.out_features}
    return None


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def attach_lora(model: nn.Module, adapters: LoRAAdapters) -> LoRAAdapters:
    """Put ``adapters`` onto ``model`` in place and freeze everything else.

    The adapters stay shared: training ``model`` trains ``adapters``.

    Raises:
        ConfigError: when ``model`` already has adapters, or a layer is missing or of another shape.
    """
    if lora_layers(model):
        raise ConfigError("the model already has LoRA adapters; merge_lora() them first")
    modules = dict(model.named_modules())
    for name, spec in adapters.layers.items():
        if name not in modules or _spec(modules[name]) != spec:
            raise ConfigError(
                f"LoRA adapters do not fit the model: layer {name!r} is missing or of another shape"
            )
    model.requires_grad_(False)
    for name in adapters.layers:
        _set_submodule(model, name, LoRALayer(modules[name], adapters.pair(name)))  # type: ignore[arg-type]
    adapters.to(next(model.parameters()).device).requires_grad_(True)
    return adapters


def add_lora(
    model: nn.Module,
    rank: int = 4,
    alpha: float | None = None,
    targets: Sequence[str] = ("*",),
    seed: int | None = None,
) -> LoRAAdapters:
    """Freeze ``model`` and give each matching convolution and linear layer a new, zero-update adapter.

    Args:
        model: Adapted in place.
        rank: ``r``; a layer whose input or output is narrower gets no adapter (it would be no saving).
        alpha: Scale numerator (default ``rank``: scale 1).
        targets: ``fnmatch`` patterns of dotted layer names to adapt (default every layer).
        seed: Seed of the adapters' initial values; ``None`` draws from torch's global generator (whose
            start differs from process to process unless seeded).

    Returns:
        The new adapters (the only trainable parameters of ``model`` now).

    Raises:
        ConfigError: for a rank below 1, or when no layer matches.
    """
    if rank < 1:
        raise ConfigError(f"LoRA rank must be at least 1, got {rank}")
    layers = {}
    for name, layer in model.named_modules():
        spec = _spec(layer)
        if spec is None or min(spec["in"], spec["out"]) < rank:
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in targets):
            layers[name] = spec
    if not layers:
        raise ConfigError(f"no convolution or linear layer of width >= {rank} matches {list(targets)}")
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    adapters = LoRAAdapters(layers, rank, float(rank if alpha is None else alpha), generator)
    return attach_lora(model, adapters)


def lora_layers(model: nn.Module) -> list[LoRALayer]:
    """The adapted layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, LoRALayer)]


@contextlib.contextmanager
def lora_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``model`` computes as its base network (e.g. the frozen reference of a KL penalty)."""
    layers = lora_layers(model)
    before = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer, enabled in zip(layers, before):
            layer.enabled = enabled


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every enabled adapter folded into its layer: a plain network again."""
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, LoRALayer):
            base = module.base
            if module.enabled:
                with torch.no_grad():
                    base.weight += module.pair.delta_weight().to(base.weight.dtype)
            _set_submodule(merged, name, base)
    return merged.requires_grad_(True)


__all__ = [
    "LORA_KIND",
    "LoRAAdapters",
    "LoRALayer",
    "LoRAPair",
    "add_lora",
    "attach_lora",
    "build_lora",
    "lora_disabled",
    "lora_layers",
    "merge_lora",
]
