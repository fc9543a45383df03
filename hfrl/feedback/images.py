"""Images for the labelling page: float arrays as PNG data URLs, cached per sample."""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from hfrl.feedback.store import FeedbackStore


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(image: np.ndarray) -> bytes:
    """A float image in ``[0, 1]`` as an 8-bit PNG (for display only; storage stays float32).

    ``(H, W)`` or ``(C, H, W)`` becomes a grey PNG, ``(3, H, W)`` an RGB one. Written directly with zlib: a
    page renders 32 of these, and Pillow's encoder costs several times more.
    """
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[0] == 1:
        pixels = pixels[0]
    colour = pixels.ndim == 3
    if colour:
        pixels = pixels.transpose(1, 2, 0).reshape(pixels.shape[1], -1)  # rows of interleaved R, G, B
    height, row_bytes = pixels.shape
    width = row_bytes // 3 if colour else row_bytes
    rows = np.zeros((height, row_bytes + 1), dtype=np.uint8)  # each row starts with filter type 0 (none)
    rows[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2 if colour else 0, 0, 0, 0)  # 8-bit, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _png_chunk(b"IEND", b"")
    )


def png_data_url(image: np.ndarray) -> str:
    """A grey ``(H, W)`` or RGB ``(3, H, W)`` float image in ``[0, 1]`` as a PNG data URL (see :func:`png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


class PngCache:
    """Rendered images by ``(sample id, which)``; samples never change, so entries never go stale."""

    def __init__(self, store: FeedbackStore, size: int = 4096) -> None:
        self.store = store
        self.size = size
        self._cache: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sample_ids: Sequence[int], which: str) -> list[str]:
        """PNG data URLs of the samples' ``which`` images, rendered once each."""
        with self._lock:
            missing = sorted({i for i in sample_ids if (i, which) not in self._cache})
        if missing:
            rendered = {i: png_data_url(a) for i, a in zip(missing, self.store.sample_arrays(missing, which))}
            with self._lock:
                for i, url in rendered.items():
                    self._cache[(i, which)] = url
                while len(self._cache) > self.size:
                    self._cache.popitem(last=False)
        out = []
        with self._lock:
            for i in sample_ids:
                url = self._cache.get((i, which))
                if url is None:  # evicted meanwhile by a burst of other requests
                    url = png_data_url(self.store.sample_arrays([i], which)[0])
                out.append(url)
        return out
