import pytest
import torch

from hfrl.errors import ConfigError
from hfrl.generators import FAMILIES, GeneratorConfig, build_generator


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("channels", "size"), [(1, (28, 28)), (1, (32, 16)), (3, (8, 8)), (3, (12, 20)), (1, (9, 30))]
)
def test_every_family_maps_images_to_images_in_unit_range(
    family: str, channels: int, size: tuple[int, int]
) -> None:
    gen = build_generator(
        GeneratorConfig(family=family, width=8, bottleneck=16, image_size=size, channels=channels)
    )
    assert gen.config.image_shape == (channels, *size)
    x = torch.rand(3, channels, *size)
    y = gen(x)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0
    assert torch.allclose(torch.sigmoid(gen.logits(x)), y)
    y.sum().backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_config_from_dict_and_errors() -> None:
    gen = build_generator({"family": "unet", "width": 8, "bottleneck": 4, "image_size": [28, 28]})
    assert gen.config.image_size == (28, 28)
    with pytest.raises(ConfigError, match="unknown generator family"):
        GeneratorConfig(family="transformer")
    with pytest.raises(ConfigError, match="channels must be 1 \\(grey\\) or 3 \\(RGB\\), got 2"):
        GeneratorConfig(channels=2)
    with pytest.raises(ConfigError, match="bad generator config"):
        build_generator({"family": "conv", "depth": 3})


def test_width_changes_capacity() -> None:
    small = build_generator(GeneratorConfig(width=8))
    big = build_generator(GeneratorConfig(width=32))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(big) > 2 * count(small)


def test_the_shipped_generator_loads_bit_identically_from_its_config_without_channels() -> None:
    """Its JSON predates colour: no ``channels`` key, so it is grey, with the same layers and outputs."""
    import json

    from hfrl.checkpoint import load_checkpoint
    from hfrl.judges import asset_path

    path = asset_path("denoiser_source")
    saved = json.loads(path.with_suffix(".json").read_text())["config"]
    assert "channels" not in saved
    model, _ = load_checkpoint(path, kind="generator")
    assert model.config.image_shape == (1, 28, 28) and model.bottleneck[1].in_features == 2 * 32 * 7 * 7
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), model.calibrate(torch.sigmoid(model.core_logits(x))))  # no padding on 28x28
    again = build_generator(saved)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval()(x), model(x))
