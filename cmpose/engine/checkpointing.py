"""Training checkpoints: written to a temporary file and renamed (never half-written), read
with ``weights_only=True``. A checkpoint holds the model, optimizer, scheduler, grad scaler,
EMA, epoch, step, RNG states and the resolved experiment config, so ``--resume`` continues
exactly where a run stopped and ``cmpose test`` / ``cmpose infer`` rebuild the model from it.
It also records what the model was trained on (``train_data``, see ``train_data_record``), so
``cmpose infer`` can say when a model has only seen synthetic figures."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmpose.checkpoint import CheckpointError
from cmpose.config import from_dict
from cmpose.engine.config import DataConfig, ExperimentConfig, StageConfig
from cmpose.utils.io import atomic_write_bytes


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to memory, then an atomic write (a crash leaves the previous file intact)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the file's fault
        raise CheckpointError(
            f"{path}: not a readable cmpose checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: expected a dict with a 'model' state dict")
    return state


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states (numpy's as plain lists: weights_only can load them)."""
    np_state = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def config_of(state: dict[str, Any], path: Path) -> ExperimentConfig:
    if "config" not in state:
        raise CheckpointError(f"{path}: has no experiment config; was it written by cmpose train?")
    return from_dict(ExperimentConfig, state["config"], str(path))


def stage_of(state: dict[str, Any], cfg: ExperimentConfig) -> StageConfig:
    names = [s.name for s in cfg.stages]
    return cfg.stages[names.index(state["stage"])]


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ExperimentConfig]:
    """Rebuild the model a checkpoint was trained as, with its (EMA if any) weights, in eval mode."""
    from cmpose.engine.stages import build_stage_model

    state = read_checkpoint(path)
    cfg = config_of(state, Path(path))
    model = build_stage_model(cfg, stage_of(state, cfg))
    weights = state.get("ema") or state["model"]
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return model.to(device).eval(), cfg


# The marker ``cmpose synth`` writes into every annotation file (``info.generator``) and the
# summary it writes at the dataset's root (``synth.json``: ``config`` and ``counts``).
SYNTH_GENERATOR = "cmpose synth"
_MARKER_READ_LIMIT = 64 * 2**20  # bytes: a merged split file larger than this is not opened


def _synth_summary(folder: Path) -> bool:
    f = folder / "synth.json"
    try:
        data = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"config", "counts"} <= set(data)


def _file_marker(ann: Path) -> bool | None:
    """``info.generator`` of one annotation file (the first of a folder): True for the synth
    generator's, False for another file, None when there is none to read."""
    files = sorted(ann.glob("*.json")) if ann.is_dir() else [ann] if ann.is_file() else []
    if not files or files[0].stat().st_size > _MARKER_READ_LIMIT:
        return None
    try:
        data = json.loads(files[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = data.get("info") if isinstance(data, dict) else None
    return isinstance(info, dict) and info.get("generator") == SYNTH_GENERATOR


def train_data_record(data: DataConfig) -> dict[str, Any]:
    """What a model trained on ``data`` has seen: ``{"synthetic": True | False | None, "source":
    str, "annotations": the training annotation path}``. Synthetic only when the data carries the
    generator's marker (its files' ``info.generator``, or ``synth.json`` at the dataset root, as
    data generated before the marker has): never guessed from a path name. None when the training
    annotations cannot be found (an unknown origin, not a real one)."""
    from cmpose.engine.testing import resolve_path

    ann = resolve_path(data.root, data.train)
    record: dict[str, Any] = {"synthetic": None, "source": "unknown", "annotations": str(ann)}
    if ann is None or not ann.exists():
        return record
    dataset = ann.parent.parent  # ROOT/annotations/<split>[.json]: the generator's layout
    marker = _file_marker(ann)
    if marker or _synth_summary(Path(data.root)) or _synth_summary(dataset):
        return record | {"synthetic": True, "source": SYNTH_GENERATOR}
    return record | {"synthetic": False, "source": "annotations without the synth marker"}


def read_train_data(state: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """The checkpoint's training-data record; for a checkpoint written before the trainer kept
    one, the record of its config's data when that still carries the synth marker, else
    ``{"synthetic": None, "source": "unknown ..."}``."""
    record = state.get("train_data")
    if isinstance(record, dict) and "synthetic" in record:
        return record
    found = train_data_record(cfg.data)
    if found["synthetic"]:
        return found | {"source": f"{SYNTH_GENERATOR} (its config's data; the checkpoint has no record)"}
    return {
        "synthetic": None,
        "source": "unknown (the checkpoint has no record)",
        "annotations": found["annotations"],
    }
