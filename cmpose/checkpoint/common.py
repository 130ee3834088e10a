"""What the checkpoint modules share: the error, the format / head / grid types, key listings."""

from __future__ import annotations

from typing import Literal

from cmpose.errors import CmposeError

Format = Literal["vitpose", "mae", "cmpose", "mmpretrain"]
HeadMode = Literal["keep", "drop"]
Grid = tuple[int, int]
FORMATS: tuple[str, ...] = ("vitpose", "mae", "cmpose", "mmpretrain")


class CheckpointError(CmposeError):
    """A checkpoint file cannot be read, or its tensors do not fit the model."""


def _listing(keys: list[str], limit: int = 10) -> str:
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")
