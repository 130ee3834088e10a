"""Small helpers for reading annotation JSON with errors that name file, record and field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cmpose.errors import DataError


def load_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises ``DataError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except OSError as err:  # a folder, no permission, an I/O error
        raise DataError(f"cannot read: {err.strerror or err}", path=path) from None
    except json.JSONDecodeError as err:
        raise DataError(
            f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})", path=path
        ) from None
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason})", path=path) from None
    except RecursionError:
        # json's parser recurses once per nesting level: 200,000 nested lists exhaust the stack.
        raise DataError("JSON nested too deeply to be an annotation file", path=path) from None


def unwrap(value: Any) -> Any:
    """PoseTrack17 files converted from MATLAB wrap scalars in one-element lists: [5] -> 5."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def number_list(value: Any, length: int | None, *, path: Path, record: str, field: str) -> list[float]:
    """A list of finite numbers (of ``length`` if given), or ``DataError`` saying what was found."""
    if not isinstance(value, (list, tuple)):
        raise DataError(
            f"expected a list of numbers, got {type(value).__name__}", path=path, record=record, field=field
        )
    if length is not None and len(value) != length:
        raise DataError(f"expected {length} numbers, got {len(value)}", path=path, record=record, field=field)
    out = []
    for v in value:
        try:
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(float(v))
        except OverflowError:  # an integer beyond float range
            ok = False
        if not ok:
            shown = repr(v) if len(repr(v)) < 40 else repr(v)[:37] + "..."
            raise DataError(f"expected finite numbers, found {shown}", path=path, record=record, field=field)
        out.append(float(v))
    return out


def number(value: Any, *, path: Path, record: str, field: str) -> float:
    value = unwrap(value)
    return number_list([value], 1, path=path, record=record, field=field)[0]
