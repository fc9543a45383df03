import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.data import (
    Domains,
    ImageSet,
    as_images,
    load_dataset,
    load_torchvision,
    parse_classes,
    read_idx,
    split_indices,
    write_idx,
)
from hfrl.errors import DataError


def test_embedded_mnist_is_real_and_balanced(mnist: ImageSet) -> None:
    assert mnist.images.shape == (5000, 1, 28, 28)
    assert mnist.images.dtype == torch.float32
    assert float(mnist.images.min()) >= 0.0 and float(mnist.images.max()) == 1.0
    assert torch.bincount(mnist.labels).tolist() == [500] * 10
    # real digits: mostly black background, a few bright stroke pixels
    assert 0.08 < float(mnist.images.mean()) < 0.2


def test_splits_are_deterministic_disjoint_and_stratified(mnist: ImageSet) -> None:
    a = split_indices(mnist.labels, seed=0)
    b = split_indices(mnist.labels, seed=0)
    c = split_indices(mnist.labels, seed=1)
    for part in ("train", "val", "test"):
        assert torch.equal(a[part], b[part])
    assert not torch.equal(a["train"], c["train"])
    all_idx = torch.cat([a["train"], a["val"], a["test"]])
    assert len(all_idx) == 5000 and len(torch.unique(all_idx)) == 5000
    assert torch.bincount(mnist.labels[a["train"]]).tolist() == [300] * 10
    assert torch.bincount(mnist.labels[a["test"]]).tolist() == [150] * 10


def test_domains_by_class(mnist: ImageSet) -> None:
    dom = Domains(mnist)
    assert dom.source("train").classes == (0,)
    assert dom.target("test").classes == tuple(range(1, 10))
    custom = Domains(mnist, source_classes=(0, 1), target_classes=(7,))
    assert custom.source("val").classes == (0, 1)
    with pytest.raises(DataError, match="overlap"):
        Domains(mnist, source_classes=(0, 1), target_classes=(1, 2))
    with pytest.raises(DataError, match="none of the classes"):
        mnist.with_classes([42])


@pytest.mark.parametrize(
    ("array", "shape"),
    [
        (np.zeros((3, 8, 8), dtype=np.uint8), (3, 1, 8, 8)),
        (np.full((2, 1, 5, 6), 255, dtype=np.uint8), (2, 1, 5, 6)),
        (torch.rand(4, 12, 12), (4, 1, 12, 12)),
        (torch.rand(4, 1, 12, 12, dtype=torch.float64), (4, 1, 12, 12)),
    ],
)
def test_as_images_accepts_grey_arrays(array, shape) -> None:
    out = as_images(array)
    assert out.shape == shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_uint8_is_scaled() -> None:
    assert float(as_images(np.full((1, 4, 4), 255, dtype=np.uint8)).max()) == 1.0


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (torch.rand(2, 2, 8, 8), "expected shape"),  # two channels: neither grey nor RGB
        (torch.rand(8, 8), "expected shape"),
        (torch.rand(2, 8, 8) * 2, r"must lie in \[0, 1\]"),
        (torch.full((1, 8, 8), float("nan")), "NaN"),
        (np.zeros((1, 8, 8), dtype=bool), "dtype"),
        ([[0.0]], "expected a torch.Tensor"),
        (torch.zeros(0, 8, 8), "at least one image"),
    ],
)
def test_as_images_rejects_bad_input(array, message) -> None:
    with pytest.raises(DataError, match=message):
        as_images(array)


def test_integers_other_than_uint8_need_max_value() -> None:
    digits = np.random.default_rng(0).integers(0, 17, size=(6, 8, 8)).astype(np.uint16)  # 0-16, as sklearn's
    with pytest.raises(DataError, match=r"max_value") as info:
        as_images(digits, name="digits")
    message = str(info.value)
    assert "\n" not in message and "uint16" in message and "(6, 8, 8)" in message and "[0, 16]" in message
    assert "divide uint8" not in message
    out = as_images(digits, max_value=16)
    assert out.dtype == torch.float32 and float(out.max()) == 1.0
    assert torch.allclose(out[:, 0], torch.from_numpy(digits.astype(np.float32)) / 16)


def test_floats_above_one_need_max_value_and_are_checked_after_it() -> None:
    images = torch.rand(3, 8, 8) * 4095
    with pytest.raises(DataError, match=r"float images must lie in \[0, 1\].*max_value") as info:
        as_images(images)
    assert "tensor(" not in str(info.value) and "torch.Tensor (3, 8, 8) float32" in str(info.value)
    assert torch.allclose(as_images(images, max_value=4095), images[:, None] / 4095)
    with pytest.raises(DataError, match=r"does not lie in \[0, max_value=255\]"):
        as_images(images, max_value=255)
    with pytest.raises(DataError, match="does not lie in"):
        as_images(torch.full((1, 8, 8), -1.0), max_value=1)
    with pytest.raises(DataError, match="max_value must be a finite number > 0"):
        as_images(images, max_value=0)


def test_uint8_with_max_value_is_divided_by_it() -> None:
    out = ImageSet.from_array(np.full((2, 8, 8), 100, dtype=np.uint8), max_value=100)
    assert float(out.images.max()) == 1.0


def test_user_tensor_domain() -> None:
    images = torch.rand(20, 16, 16)
    labels = torch.arange(20) % 2
    data = ImageSet.from_array(images, labels)
    dom = Domains(data, source_classes=(0,), target_classes=(1,))
    assert len(dom.source("train")) + len(dom.source("val")) + len(dom.source("test")) == 10
    assert dom.target("train").image_shape == (1, 16, 16)
    with pytest.raises(DataError, match="labels"):
        ImageSet.from_array(images, labels[:5])


def test_parse_classes() -> None:
    assert parse_classes("0") == (0,)
    assert parse_classes("1-9") == tuple(range(1, 10))
    assert parse_classes("1,3,5-7") == (1, 3, 5, 6, 7)
    with pytest.raises(DataError):
        parse_classes("a-b")
    with pytest.raises(DataError):
        parse_classes("")


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the format of MNIST and friends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_dataset(root: Path, folder: str, prefix: str, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    for part in ("train", "t10k") if not prefix else ("train", "test"):
        _write_idx(root / folder / "raw" / f"{prefix}{part}-images-idx3-ubyte", images)
        _write_idx(root / folder / "raw" / f"{prefix}{part}-labels-idx1-ubyte", labels)
    return images, labels


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")]
)
def test_torchvision_datasets_from_local_idx(tmp_path: Path, name: str, folder: str) -> None:
    images, labels = _fake_dataset(tmp_path, folder, "")
    data = load_dataset(name, tmp_path)
    assert data.images.shape == (12, 1, 28, 28)
    assert torch.equal(data.labels, torch.from_numpy(labels).long())
    assert torch.allclose(data.images[:, 0], torch.from_numpy(images).float() / 255)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_files_lying_flat_in_the_folder(tmp_path: Path, suffix: str) -> None:
    """As distributions ship them (e.g. Debian's /usr/share/datasets/fashion-mnist), gzip-compressed or not."""
    images, labels = _fake_dataset(tmp_path / "staging", "x", "")
    for part in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            raw = (tmp_path / "staging" / "x" / "raw" / f"{part}-{kind}-ubyte").read_bytes()
            dest = tmp_path / "flat" / f"{part}-{kind}-ubyte{suffix}"
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(gzip.compress(raw) if suffix else raw)
    data = load_dataset("fashion-mnist", tmp_path / "flat")
    assert data.name == "fashion-mnist" and data.images.shape == (12, 1, 28, 28)
    assert torch.equal(data.labels, torch.from_numpy(labels).long())
    assert torch.allclose(data.images[:, 0], torch.from_numpy(images).float() / 255)


def test_write_idx_is_read_back_by_torchvision(tmp_path: Path) -> None:
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    images = np.random.default_rng(1).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels.gz", np.arange(5))
    assert np.array_equal(read_sn3_pascalvincent_tensor(str(tmp_path / "images")).numpy(), images)
    assert np.array_equal(read_idx(tmp_path / "labels.gz"), np.arange(5))


def test_a_broken_idx_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-idx").write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "not-idx")
    write_idx(tmp_path / "short", np.zeros((3, 4, 4)))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-5])
    with pytest.raises(DataError, match="holds"):
        read_idx(tmp_path / "short")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(8))[:-6])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "cut.gz")


def test_emnist_is_transposed_back(tmp_path: Path) -> None:
    images, _ = _fake_dataset(tmp_path, "EMNIST", "emnist-digits-")
    data = load_torchvision("emnist", tmp_path)
    assert torch.allclose(data.images[:, 0], torch.from_numpy(images).float().transpose(1, 2) / 255)


def test_missing_dataset_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--download"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("kmnist")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("cifar")


def test_user_images_in_every_form_become_one_image_set(tmp_path) -> None:
    from PIL import Image

    from hfrl.data import load_images, to_image_set

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, size=(6, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 0, 1])
    reference = ImageSet.from_array(arrays, labels)
    pil_pairs = [(Image.fromarray(a, mode="L"), int(c)) for a, c in zip(arrays, labels)]  # torchvision-style
    tensors = [torch.from_numpy(a)[None].float() / 255 for a in arrays]  # ToTensor output, no labels
    assert to_image_set(pil_pairs).digest == reference.digest
    assert to_image_set((arrays, labels)).digest == reference.digest
    unlabelled = to_image_set(tensors)
    assert not unlabelled.labelled and torch.allclose(unlabelled.images, reference.images)
    np.savez(tmp_path / "x.npz", images=arrays, labels=labels)
    assert load_images(tmp_path / "x.npz").digest == reference.digest
    for i, a in enumerate(arrays):
        Image.fromarray(a, mode="L").save(tmp_path / f"{i}.png")
    flat = load_images(tmp_path)  # a flat folder: no labels (the .npz beside the images is not an image)
    assert (
        flat.image_shape == (1, 8, 8) and not flat.labelled and torch.allclose(flat.images, reference.images)
    )
    with pytest.raises(DataError, match="images of different sizes: item 0 is 8x8, item 1 is 4x8"):
        to_image_set([arrays[0], arrays[1][:4]])
    with pytest.raises(DataError, match="CMYK images are not supported|expected a grey image"):
        to_image_set([np.zeros((2, 8, 8), dtype=np.uint8)])
    assert "tensor(" not in repr(reference) and "8x8" in repr(reference)


def test_a_folder_of_idx_files_is_read_as_user_images(tmp_path) -> None:
    from hfrl.data import load_images, write_idx

    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    data = load_images(tmp_path)
    assert data.labels.tolist() == [0, 1, 2, 3, 4] and torch.allclose(
        data.images[:, 0], torch.from_numpy(images) / 255
    )


def test_colour_images_channel_first_or_last_from_arrays_files_and_folders(tmp_path) -> None:
    from PIL import Image

    from hfrl.data import load_images, to_image_set

    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, size=(6, 3, 12, 20), dtype=np.uint8)  # (N, 3, H, W), non-square
    labels = np.array([0, 1, 0, 1, 0, 1])
    reference = ImageSet.from_array(first, labels)
    assert reference.image_shape == (3, 12, 20) and reference.images.is_contiguous()
    last = first.transpose(0, 2, 3, 1)  # (N, H, W, 3), as image libraries give it
    assert ImageSet.from_array(last, labels).digest == reference.digest
    np.save(tmp_path / "last.npy", last)
    assert torch.equal(load_images(tmp_path / "last.npy").images, reference.images)
    np.savez(tmp_path / "first.npz", images=first, labels=labels)
    assert load_images(tmp_path / "first.npz").digest == reference.digest
    folder = tmp_path / "rgb"
    for i, (image, label) in enumerate(zip(last, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="RGB").save(folder / str(label) / f"{i}.png")
    from_folder = load_images(folder)
    assert from_folder.image_shape == (3, 12, 20) and from_folder.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(from_folder.images, reference.images[[0, 2, 4, 1, 3, 5]])
    pil = [Image.fromarray(image, mode="RGB") for image in last]
    assert torch.equal(to_image_set(pil).images, reference.images)  # a torchvision-style list of PIL images

    grey = tmp_path / "grey-in-rgb"  # RGB files that all hold grey pictures stay grey
    grey.mkdir()
    for i in range(3):
        Image.fromarray(np.repeat(first[i, :1], 3, 0).transpose(1, 2, 0), mode="RGB").save(grey / f"{i}.png")
    assert load_images(grey).image_shape == (1, 12, 20)
    mixed = tmp_path / "mixed"  # one grey file among colour ones: all become colour
    mixed.mkdir()
    Image.fromarray(first[0, 0], mode="L").save(mixed / "0.png")
    Image.fromarray(last[1], mode="RGB").save(mixed / "1.png")
    both = load_images(mixed)
    assert both.image_shape == (3, 12, 20) and torch.equal(both.images[0, 0], both.images[0, 2])


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((4, 2, 8, 8), "C = 1 \\(grey\\) or 3 \\(RGB\\), got \\(4, 2, 8, 8\\)"),
        ((4, 8, 8, 4), "got \\(4, 8, 8, 4\\)"),
        ((4, 3, 6, 8), "at least 8x8 pixels, got \\(4, 3, 6, 8\\)"),
        ((4, 7, 9), "at least 8x8 pixels"),
    ],
)
def test_bad_image_shapes_are_one_line_errors(shape, message) -> None:
    with pytest.raises(DataError, match=message) as info:
        ImageSet.from_array(np.zeros(shape, dtype=np.uint8))
    assert "\n" not in str(info.value)
