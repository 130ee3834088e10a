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


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.DOTALL)
        detail = (found.group(1) if found else str(err)).strip().splitlines()[0]
        if "Unsupported global" not in detail:
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


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``.pth/.pt/.bin/.ckpt``).

    Torch files are read with ``weights_only=True``: a file pickling other Python objects is
    refused, never executed. ``state_dict`` / ``model`` / ``module`` wrappers are unwrapped (our
    training checkpoints keep the weights under ``model``), then a ``module.`` (DDP) or
    ``_orig_mod.`` (torch.compile) prefix shared by every key is stripped.

    Raises:
        CheckpointError: missing or unreadable file, unknown suffix, or no state dict inside.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    elif suffix in TORCH_SUFFIXES:
        obj = _torch_load(path)
    else:
        raise CheckpointError(
            f"{path}: unknown suffix '{suffix}'; expected .safetensors, {', '.join(TORCH_SUFFIXES)}"
        )
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
