import pytest
import torch

from hfrl.errors import ConfigError
from hfrl.generators import FAMILIES, GeneratorConfig, build_generator


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("size", [(28, 28), (32, 16)])
def test_every_family_maps_images_to_images_in_unit_range(family: str, size: tuple[int, int]) -> None:
    gen = build_generator(GeneratorConfig(family=family, width=8, bottleneck=16, image_size=size))
    x = torch.rand(3, 1, *size)
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
    with pytest.raises(ConfigError, match="divisible by 4"):
        GeneratorConfig(family="conv", image_size=(30, 30))
    with pytest.raises(ConfigError, match="bad generator config"):
        build_generator({"family": "conv", "depth": 3})


def test_width_changes_capacity() -> None:
    small = build_generator(GeneratorConfig(width=8))
    big = build_generator(GeneratorConfig(width=32))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(big) > 2 * count(small)
