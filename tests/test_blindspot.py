import pytest
import torch

from hfrl.blindspot import blindspot_batch, check_blindspot, shuffle_down, shuffle_up
from hfrl.errors import ConfigError


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_shuffle_round_trips_and_takes_every_stride_th_pixel(stride: int) -> None:
    images = torch.rand(3, 2, 28, 28)
    sub = shuffle_down(images, stride)
    assert sub.shape[0] == 3 * stride * stride and sub.shape[1] == 2
    assert sub.shape[-1] % 4 == 0 and sub.shape[-2] % 4 == 0  # the U-Net's needs
    assert torch.equal(shuffle_up(sub, stride, (28, 28)), images)
    if stride > 1:  # sub-image 1 of image 0: every stride-th pixel from row 0, column 1
        expected = images[0, :, ::stride, 1::stride]
        assert torch.equal(sub[1, :, : expected.shape[1], : expected.shape[2]], expected)


def test_one_pixel_blind_spot_hides_only_the_grid_and_fills_with_neighbours() -> None:
    noisy = torch.rand(2, 1, 12, 12)
    masked, mask = blindspot_batch(noisy, (1, 2), grid=4)
    assert int(mask.sum()) == 9 and mask[0, 0, 1, 2] == 1
    assert torch.equal(masked[mask.expand_as(noisy) == 0], noisy[mask.expand_as(noisy) == 0])
    centre = noisy[0, 0, 4:7, 5:8]
    assert torch.isclose(masked[0, 0, 5, 6], (centre.sum() - centre[1, 1]) / 8)


def test_wide_blind_spot_hides_the_square_around_each_predicted_pixel() -> None:
    """Nothing within `radius` of a predicted pixel keeps its noisy value: its noise cannot leak."""
    noisy = torch.rand(1, 1, 16, 16) + 5.0  # far from the fill value (the mean)
    masked, mask = blindspot_batch(noisy, (3, 3), grid=8, radius=2)
    assert int(mask.sum()) == 4
    changed = masked != noisy
    assert changed[0, 0, 1:6, 1:6].all() and not changed[0, 0, 0, :].any() and not changed[0, 0, 6, 3]
    assert changed.sum() == 4 * 25


def test_blind_spot_settings_are_checked() -> None:
    check_blindspot(6, 2, 1)
    for grid, radius, stride in [(4, 2, 1), (4, -1, 1), (4, 0, 0)]:
        with pytest.raises(ConfigError):
            check_blindspot(grid, radius, stride)
