"""A rank that dies mid-epoch (issue 18, item 8): two gloo processes run ``cmpose train``; rank 1
exits abruptly after its second step, as a crashed or killed process would. Rank 0 must stop with
a message saying another process died, not hang in its next all-reduce."""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import torch.multiprocessing as mp
import yaml
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.dist import RankFailedError, is_peer_failure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, config: str, out: str, report: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank), CMPOSE_DIST_TIMEOUT="60",
    )  # fmt: skip
    import torch

    torch.set_num_threads(1)
    from cmpose.cli.main import main
    from cmpose.engine.trainer import StageTrainer

    real = StageTrainer._train_step

    def dies_at_step_2(self, batch):  # noqa: ANN001, ANN202
        if rank == 1 and self.step == 2:
            os._exit(3)  # no cleanup, no goodbye to the process group: as SIGKILL or a crash
        return real(self, batch)

    StageTrainer._train_step = dies_at_step_2
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("cmpose").addHandler(handler)
    rc = main(["train", config, "--out", out])
    Path(report).write_text(json.dumps({"rc": rc, "log": records}))


def test_a_rank_that_dies_mid_epoch_stops_the_run_with_a_message(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_toy_posetrack(root, num_videos=1, num_frames=8, people=2, image_size=(160, 96), split="train")
    write_toy_posetrack(root, num_videos=1, num_frames=2, people=1, image_size=(160, 96), split="val")
    cfg = {
        "data": {"root": str(root), "batch_size": 2, "workers": 0, "crop": TINY_CROP},
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 0},
        "stages": [{"name": "mcl", "kind": "mcl", "epochs": 1}],
        "run": {"val_every": 0, "log_every": 1, "amp": "off", "device": "cpu"},
        "test": {"boxes": "gt", "workers": 0, "batch_size": 4, "flip_test": False},
    }
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(cfg))
    report = tmp_path / "rank0.json"
    ctx = mp.start_processes(
        _rank, args=(2, _free_port(), str(config), str(tmp_path / "run"), str(report)),
        nprocs=2, start_method="spawn", join=False,
    )  # fmt: skip
    # Each process joined on its own (ProcessContext.join would SIGTERM rank 0 as soon as rank 1
    # exits); a hang fails here after 240 s instead of blocking CI.
    for p in ctx.processes:
        p.join(timeout=240)
    for i, p in enumerate(ctx.processes):
        if p.is_alive():
            p.kill()
            raise AssertionError(f"rank {i} still running: the run hangs")
    exit_codes = {i: p.exitcode for i, p in enumerate(ctx.processes)}
    assert exit_codes[1] == 3
    assert report.is_file(), "rank 0 died without reporting"
    result = json.loads(report.read_text())
    assert result["rc"] == 2  # one clear error line from cmpose, not a traceback
    message = " ".join(result["log"])
    assert "another process of the run died" in message and "rank 0 of 2" in message
    assert not (tmp_path / "run" / "mcl" / "final.pt").exists()


def test_peer_failure_detection() -> None:
    assert is_peer_failure(RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer"))
    assert is_peer_failure(RuntimeError("Timed out waiting 60000ms for send operation to complete"))
    assert not is_peer_failure(RuntimeError("size mismatch for weight"))
    assert not is_peer_failure(ValueError("timeout"))
    assert issubclass(RankFailedError, Exception)
