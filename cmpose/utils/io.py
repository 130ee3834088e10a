"""Writing result files so that a crash never leaves a half-written one."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode("utf-8"))


def remove_stale_temporaries(folder: Path, names: list[str] | None = None, depth: int = 0) -> list[Path]:
    """Delete the hidden ``.NAME.XXXX.tmp`` files that writes of this kind leave when their
    process is killed (SIGKILL, power loss) between creating and renaming them; nothing else
    would ever remove them. Only temporaries of ``names`` when given (a shared output folder:
    another job's live temporaries must survive), else all of them, in ``folder`` and ``depth``
    levels of subfolders. Returns what was removed."""
    folder = Path(folder)
    patterns = [f".{n}.*.tmp" for n in names] if names is not None else [".*.tmp"]
    found: list[Path] = []
    for level in range(depth + 1):
        prefix = "*/" * level
        for pattern in patterns:
            found.extend(folder.glob(prefix + pattern))
    removed = []
    for tmp in sorted(set(found)):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
            log.info("removed a stale temporary file of an interrupted write: %s", tmp)
    return removed
