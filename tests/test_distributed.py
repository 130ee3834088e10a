"""DDP on the CPU: two gloo processes train a few steps; both ranks must end with identical
parameters (DDP broadcasts rank 0's at the start and all-reduces the gradients), and the
validation people gathered from both ranks must be every sample exactly once."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.config import from_dict
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.config import ExperimentConfig

TINY = {
    "data": {
        "batch_size": 2,
        "workers": 0,
        "crop": TINY_CROP,
    },
    "model": TINY_MODEL,
    "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 0, "schedule": "cosine"},
    "stages": [{"name": "mcl", "kind": "mcl", "epochs": 1}],
    "run": {"val_every": 0, "log_every": 1},
    "test": {"boxes": "gt", "workers": 0, "batch_size": 4, "flip_test": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from cmpose.engine import dist
    from cmpose.engine.testing import predict_people
    from cmpose.engine.trainer import StageTrainer

    cfg = from_dict(ExperimentConfig, {**TINY, "data": {**TINY["data"], "root": root}})
    device = dist.setup("cpu")
    # Different initial weights per rank: DDP must broadcast rank 0's before training.
    torch.manual_seed(rank)
    trainer = StageTrainer(cfg, cfg.stages[0], Path(out) / "mcl", None, device, None, resume=False)
    for _ in range(3):
        batch = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=2)))
        trainer._train_step(batch)
    # Parameters only: BatchNorm running statistics are per rank between forwards (DDP
    # broadcasts rank 0's at each forward, and rank 0 is the one that saves checkpoints).
    torch.save(dict(trainer.model.named_parameters()), Path(out) / f"rank{rank}.pt")
    people = predict_people(trainer.model, trainer.dataset, cfg.test, device, None)
    gathered = dist.gather_objects([(p["video"], p["frame"], tuple(p["box"])) for p in people])
    if rank == 0:
        torch.save({"gathered": gathered, "n": len(trainer.dataset)}, Path(out) / "people.pt")
    del trainer  # cleanup() frees the DDP model only once nothing names it
    dist.cleanup()


def test_two_cpu_processes_hold_identical_weights(tmp_path: Path) -> None:
    write_toy_posetrack(
        tmp_path / "data", num_videos=1, num_frames=4, people=2, image_size=(160, 96), split="train"
    )
    write_toy_posetrack(
        tmp_path / "data", num_videos=1, num_frames=4, people=2, image_size=(160, 96), split="val"
    )
    out = tmp_path / "run"
    out.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "data"), str(out)), nprocs=2,
                       start_method="spawn")  # fmt: skip
    a = torch.load(out / "rank0.pt", weights_only=True)
    b = torch.load(out / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs between ranks")
    people = torch.load(out / "people.pt", weights_only=False)
    flat = [p for part in people["gathered"] for p in part]
    assert len(flat) == people["n"]  # every training sample predicted once across the ranks
    assert len(set(flat)) == people["n"]
