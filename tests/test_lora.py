"""LoRA adapters: zero-update start, only adapters train, merge equals the adapted model, safe checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from hfrl.checkpoint import load_checkpoint, save_checkpoint
from hfrl.diffusion import UNet2D, UNetConfig
from hfrl.errors import CheckpointError, ConfigError
from hfrl.lora import (
    LORA_KIND,
    LoRALayer,
    add_lora,
    attach_lora,
    lora_disabled,
    lora_layers,
    merge_lora,
)


def small_unet(seed: int = 0) -> UNet2D:
    torch.manual_seed(seed)
    model = UNet2D(UNetConfig(base_width=8, width_mults=(1, 2), groups=4))
    nn.init.normal_(model.conv_out.weight, std=0.1)  # the shipped init is zero; make the output depend on it
    return model.eval()


def perturb(adapters: nn.Module, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapters.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(3, 1, 28, 28, generator=gen), torch.tensor([5, 300, 900])


def test_adapters_start_as_the_base_model_and_only_they_train() -> None:
    model = small_unet()
    x, t = inputs()
    base_out = model(x, t)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    adapters = add_lora(model, rank=2)
    assert torch.allclose(model(x, t), base_out)  # B = 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and {id(p) for p in trainable} == {id(p) for p in adapters.parameters()}
    n_base = sum(v.numel() for v in base_state.values())
    assert sum(p.numel() for p in trainable) < 0.25 * n_base
    # Every conv and linear layer of width >= rank is adapted.
    assert len(lora_layers(model)) == len(adapters.layers) > 10
    assert all(isinstance(model.get_submodule(name), LoRALayer) for name in adapters.layers)

    opt = torch.optim.SGD(trainable, lr=0.1)
    for _ in range(2):  # B = 0 gives A no gradient in the first step; the second moves both
        opt.zero_grad()
        model(x, t).pow(2).mean().backward()
        opt.step()
    assert not torch.allclose(model(x, t), base_out)
    after = {k.replace(".base.", "."): v for k, v in model.state_dict().items() if ".pair." not in k}
    assert all(torch.equal(after[k], v) for k, v in base_state.items())  # base weights never moved


def test_merge_equals_the_adapted_model_and_disabled_equals_the_base() -> None:
    model = small_unet()
    x, t = inputs()
    base_out = model(x, t)
    adapters = add_lora(model, rank=3, alpha=6.0)
    perturb(adapters)
    adapted = model(x, t)
    assert not torch.allclose(adapted, base_out, atol=1e-4)
    merged = merge_lora(model)
    assert not lora_layers(merged) and isinstance(merged, UNet2D)
    assert torch.allclose(merged(x, t), adapted, atol=1e-5)
    assert set(merged.state_dict()) == set(small_unet().state_dict())  # a plain DDPM again
    with lora_disabled(model):
        assert torch.allclose(model(x, t), base_out)
    assert torch.allclose(model(x, t), adapted)  # switched back on


def test_seeded_adapters_are_the_same_whatever_the_global_generator_did() -> None:
    first = add_lora(small_unet(), rank=2, seed=7)
    torch.rand(100)  # the global generator moves on; a seeded init must not care
    second = add_lora(small_unet(), rank=2, seed=7)
    other = add_lora(small_unet(), rank=2, seed=8)
    a, b, c = (m.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.endswith("down.weight"))


def test_targets_and_bad_settings() -> None:
    adapters = add_lora(small_unet(), rank=2, targets=("time_mlp.*",))
    assert set(adapters.layers) == {"time_mlp.0", "time_mlp.2"}
    with pytest.raises(ConfigError, match="rank"):
        add_lora(small_unet(), rank=0)
    with pytest.raises(ConfigError, match="matches"):
        add_lora(small_unet(), rank=2, targets=("nothing.*",))
    model = small_unet()
    add_lora(model, rank=2)
    with pytest.raises(ConfigError, match="already has"):
        add_lora(model, rank=2)


def test_adapters_checkpoint_round_trip(tmp_path: Path) -> None:
    model = small_unet()
    x, t = inputs()
    adapters = add_lora(model, rank=2)
    perturb(adapters)
    expected = model(x, t)
    save_checkpoint(tmp_path / "adapters", adapters, kind=LORA_KIND, config=adapters.config_dict())
    size = (tmp_path / "adapters.safetensors").stat().st_size
    assert size < 0.25 * sum(p.numel() * 4 for p in small_unet().parameters())

    loaded, doc = load_checkpoint(tmp_path / "adapters", kind=LORA_KIND)
    fresh = small_unet()
    attach_lora(fresh, loaded)  # type: ignore[arg-type]
    assert doc["config"]["rank"] == 2 and torch.allclose(fresh(x, t), expected, atol=1e-6)

    other = UNet2D(UNetConfig(base_width=16, width_mults=(1, 2), groups=4))
    with pytest.raises(ConfigError, match="do not fit"):
        attach_lora(other, load_checkpoint(tmp_path / "adapters", kind=LORA_KIND)[0])  # type: ignore[arg-type]
    (tmp_path / "adapters.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "adapters", kind=LORA_KIND)
