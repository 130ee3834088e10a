"""Decoding video frames from JPEG with a small LRU cache.

Neighbouring clips share frames (every person of a keyframe uses the same T frames; consecutive
keyframes overlap), so each worker keeps the last few decoded frames. JPEGs can be decoded at
1/2, 1/4 or 1/8 size by libjpeg's DCT scaling (``cv2.IMREAD_REDUCED_COLOR_*``), which is faster
and alias-free when the crop shrinks the region by at least that factor anyway.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from cmpose.errors import DataError

_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def reduction_factor(region_size: np.ndarray, output_size: tuple[int, int], max_factor: int = 4) -> int:
    """Largest power of two f <= max_factor with region / f still >= output on both axes."""
    ratio = float(min(region_size[0] / output_size[0], region_size[1] / output_size[1]))
    f = 1
    while f * 2 <= max_factor and ratio >= f * 2:
        f *= 2
    return f


def reduced_to_full(factor: int) -> np.ndarray:
    """(3, 3) matrix from reduced-image pixel coordinates to full-image ones.

    Reduced pixel i covers full pixels f*i .. f*i + f - 1, so its centre is f*i + (f - 1) / 2
    (pixel-centre convention, as everywhere in cmpose.ops.geometry).
    """
    off = (factor - 1) / 2.0
    return np.array([[factor, 0.0, off], [0.0, factor, off], [0.0, 0.0, 1.0]])


def decode_image(path: Path, factor: int = 1) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 BGR, optionally reduced by ``factor`` (1, 2, 4, 8)."""
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except OSError as err:
        raise DataError(f"cannot read image: {err}", path=path) from None
    if buf.size == 0:
        raise DataError("empty image file", path=path)
    flag = _REDUCED[factor] if path.suffix.lower() in (".jpg", ".jpeg") else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error as err:
        raise DataError(
            f"cannot decode image: {err.msg if hasattr(err, 'msg') else err}", path=path
        ) from None
    if img is None:
        raise DataError("not a decodable image", path=path)
    if factor > 1 and flag == cv2.IMREAD_COLOR:  # non-JPEG: emulate the reduced decode
        h, w = img.shape[:2]
        img = cv2.resize(img, (-(-w // factor), -(-h // factor)), interpolation=cv2.INTER_AREA)
    return img


class FrameCache:
    """LRU cache of decoded frames, keyed by (path, reduction factor). One per worker process."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[Path, int], np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, path: Path, factor: int = 1) -> np.ndarray:
        """The frame reduced by exactly ``factor`` (decoded on a miss)."""
        key = (path, factor)
        img = self._items.get(key)
        if img is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return img
        self.misses += 1
        img = decode_image(path, factor)
        img.flags.writeable = False  # shared by later hits: nobody may draw on it in place
        if self.capacity > 0:
            self._items[key] = img
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return img
