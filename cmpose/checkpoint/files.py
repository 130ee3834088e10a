"""Reading and writing state-dict files: ``.safetensors`` and torch files (``weights_only=True``)."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from cmpose.checkpoint.common import CheckpointError

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPERS = ("state_dict", "model", "module")  # unwrapped in ViTPose's load_checkpoint order


def _numpy_globals() -> list[tuple[object, str]]:
    """numpy's array / scalar / dtype reconstruction functions under the names pickles use.

    mmengine checkpoints (mmpose 1.x) keep numpy arrays in ``meta`` (e.g. ``dataset_meta``'s
    sigmas), which ``weights_only`` refuses by default. These functions only rebuild arrays from
    bytes; anything else a pickle names (``os.system``, a class's ``__reduce__``) stays refused.
    numpy 1.x pickles name ``numpy.core.*``, numpy 2.x ``numpy._core.*``: both are listed.
    """
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out: list[tuple[object, str]] = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for core in ("numpy.core", "numpy._core"):
        out += [
            (multiarray._reconstruct, f"{core}.multiarray._reconstruct"),
            (multiarray.scalar, f"{core}.multiarray.scalar"),
        ]
    # numpy >= 1.25 may name a dtype by its class (numpy.dtypes.Float32DType, ...)
    dtypes = getattr(np, "dtypes", None)
    for name in dir(dtypes) if dtypes is not None else ():
        if name.endswith("DType"):
            out.append((getattr(dtypes, name), f"numpy.dtypes.{name}"))
    return out


def _torch_load(path: Path) -> object:
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words the refusal of a global in several ways across versions ("WeightsUnpickler
        # error: Unsupported global: GLOBAL os.system ...", "unsupported GLOBAL posix.system whose
        # module posix is blocked"); the line naming the GLOBAL is the one to show.
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.DOTALL)
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        named = [line for line in lines if re.search(r"\bglobal\b", line, re.IGNORECASE)]
        detail = found.group(1).strip().splitlines()[0] if found else (named or lines)[0]
        if not re.search(r"\bglobal\b", detail, re.IGNORECASE):
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from err
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True), it pickles Python objects besides tensors "
            f"({detail}). If you trust the file, re-save its state dict alone, e.g. "
            "torch.save(torch.load(p, weights_only=False)['state_dict'], 'weights.pth')"
        ) from err
    except Exception as err:  # truncated zip, EOF, foreign format: all mean "cannot read it"
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from err


def read_file(path: str | Path) -> object:
    """What a checkpoint file holds, unwrapped by nothing: a dict of tensors for ``.safetensors``,
    the unpickled object (``weights_only=True``, numpy arrays allowed) for torch files.

    Raises:
        CheckpointError: missing or unreadable file, unknown suffix, refused pickle.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    if suffix in TORCH_SUFFIXES:
        return _torch_load(path)
    raise CheckpointError(
        f"{path}: unknown suffix '{suffix}'; expected .safetensors, {', '.join(TORCH_SUFFIXES)}"
    )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``.pth/.pt/.bin/.ckpt``).

    Torch files are read with ``weights_only=True``: a file pickling other Python objects is
    refused, never executed (numpy's array reconstruction is allowed, for mmengine's ``meta``).
    See ``state_dict_of`` for the unwrapping.

    Raises:
        CheckpointError: missing or unreadable file, unknown suffix, or no state dict inside.
    """
    return state_dict_of(read_file(path), path)


def state_dict_of(obj: object, path: str | Path) -> dict[str, Tensor]:
    """The state dict inside ``read_file``'s result: ``state_dict`` / ``model`` / ``module``
    wrappers are unwrapped (our training checkpoints keep the weights under ``model``), then a
    ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix shared by every key is stripped.

    Raises:
        CheckpointError: naming ``path`` when there is no state dict of tensors inside.
    """
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    expected = "expected a state dict (names -> tensors), optionally under 'state_dict', 'model' or 'module'"
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: {expected}; found an empty {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{path}: entry '{k}' is a {type(v).__name__}, not a tensor; {expected}")
    sd = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (``cmpose convert`` records the source format
    and what the file lacks there); ``{}`` for torch files and safetensors without metadata."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err


def save_state_dict(
    path: str | Path, sd: Mapping[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``sd`` as safetensors atomically (a temporary file in the same folder, then ``os.replace``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, set()
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        tensors[k] = v.clone() if ptr in seen and v.numel() else v  # safetensors refuses shared storage
        seen.add(ptr)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
