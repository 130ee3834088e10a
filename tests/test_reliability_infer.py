"""``cmpose infer`` / ``cmpose test`` under hostile input and interruption (issue 18, items 5, 6):
every bad argument is one clear error (exit 2), a silent substitution or a silent empty result
is refused or warned about, Ctrl-C / SIGTERM exit 130 leaving no output or temporary behind."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from test_infer_video import CROP, tiny_model, write_video

from cmpose.checkpoint import CheckpointError
from cmpose.cli import main as cli_main
from cmpose.cli.main import main
from cmpose.data.config import ClipConfig
from cmpose.engine.config import DataConfig, ExperimentConfig
from cmpose.engine.testing import load_trained_model
from cmpose.errors import CmposeError, DataError
from cmpose.infer import video_io
from cmpose.infer.video import VideoPoseRunner
from cmpose.infer.video_io import FrameSource, run_video

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``cmpose infer`` on a 5-frame video with boxes on every frame, the model a tiny random one."""
    from cmpose.engine import checkpointing

    cfg = ExperimentConfig(data=DataConfig(crop=CROP, clip=ClipConfig(num_frames=3, test_step=1)))
    monkeypatch.setattr(checkpointing, "load_model", lambda path, device: (tiny_model(), cfg))
    # cmpose infer reads the file to tell a training checkpoint from outside weights
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "config": {}}, "ck.pt")
    src = tmp_path / "clip.mp4"
    write_video(src, 5)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps([{"frame_index": f, "bbox": [10, 8, 22, 44], "score": 0.9} for f in range(5)])
    )
    parser = argparse.ArgumentParser()
    cli_main.infer.register(parser.add_subparsers())

    def run(*extra: str, boxes_file: Path = boxes) -> int:
        base = ["infer", str(src), "--checkpoint", "ck.pt", "--boxes", str(boxes_file), "--no-flip"]
        args = parser.parse_args(base + ["--out", str(tmp_path / "out"), *extra])
        return args.func(args)

    return run, tmp_path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--device", "tpu"], "device"),
        (["--device", "cuda:99"], "device"),
        (["--fps", "0"], "frame rate"),
        (["--fps", "-5"], "frame rate"),
        (["--fps", "nan"], "frame rate"),
    ],
)
def test_bad_infer_arguments_are_refused(cli, extra: list[str], message: str) -> None:
    run, tmp_path = cli
    with pytest.raises(CmposeError, match=message):
        run(*extra)
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_refused(cli) -> None:
    run, tmp_path = cli
    (tmp_path / "out").write_text("keep me")
    with pytest.raises(CmposeError, match="is a file"):
        run()
    assert (tmp_path / "out").read_text() == "keep me"


def test_fps_zero_is_refused_not_replaced() -> None:
    with pytest.raises(DataError, match="frame rate"):
        FrameSource(Path("/nonexistent"), fps=0.0)


def test_detections_all_past_the_video_are_refused(cli, caplog) -> None:
    run, tmp_path = cli
    late = tmp_path / "late.json"
    late.write_text(
        json.dumps([{"frame_index": 100 + f, "bbox": [10, 8, 22, 44], "score": 0.9} for f in range(3)])
    )
    with pytest.raises(DataError, match="past the video's 5 frames"):
        run(boxes_file=late)
    some = tmp_path / "some.json"
    some.write_text(
        json.dumps([{"frame_index": f, "bbox": [10, 8, 22, 44], "score": 0.9} for f in (0, 1, 9)])
    )
    with caplog.at_level(logging.WARNING):
        assert run(boxes_file=some) == 0
    assert "1 of 3 frames fall past" in caplog.text


def test_ctrl_c_in_infer_exits_130_and_leaves_nothing(cli, monkeypatch, caplog) -> None:
    run, tmp_path = cli
    real = video_io.draw_overlay
    drawn = []

    def interrupted(frame, people, label="", min_score=0.3):
        drawn.append(1)
        if len(drawn) == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the video
        return real(frame, people, label, min_score)

    monkeypatch.setattr(video_io, "draw_overlay", interrupted)
    with caplog.at_level(logging.ERROR):
        assert run() == 130
    assert "interrupted" in caplog.text
    assert list((tmp_path / "out").iterdir()) == []  # no output, no temporary


def test_stale_temporaries_of_a_killed_infer_are_removed(cli) -> None:
    run, tmp_path = cli
    out = tmp_path / "out"
    out.mkdir()
    stale, foreign = out / ".clip.mp4.k1ll3d.tmp", out / ".other.mp4.live.tmp"
    stale.write_bytes(b"half a video"), foreign.write_bytes(b"another job's")
    assert run() == 0
    assert not stale.exists() and foreign.exists()


def test_truncated_video_is_reported(tmp_path: Path, caplog) -> None:
    src = tmp_path / "short.mp4"
    write_video(src, 4)
    source = FrameSource(src)
    source.num_frames = 9  # as a truncated file's header declares
    runner = VideoPoseRunner(tiny_model(), CROP, 3, 1, "cpu")
    boxes = lambda i, f: (np.array([[5.0, 8, 22, 44]]), np.array([0.9]))  # noqa: E731
    with caplog.at_level(logging.WARNING):
        stats = run_video(source, tmp_path / "o.mp4", tmp_path / "o.jsonl", runner, boxes, progress=False)
    assert stats["frames"] == 4
    assert "declares 9 frames but only 4" in caplog.text


def test_checkpoint_whose_config_does_not_fit_its_weights(tmp_path: Path, caplog) -> None:
    from tiny_configs import TINY_MODEL

    from cmpose.config import from_dict, to_dict
    from cmpose.engine.checkpointing import save_checkpoint
    from cmpose.engine.stages import build_stage_model

    cfg = from_dict(ExperimentConfig, {"model": TINY_MODEL, "stages": [{"name": "s", "kind": "single"}]})
    model = build_stage_model(cfg, cfg.stages[0])
    wrong = to_dict(cfg)
    wrong["model"]["backbone"]["embed_dim"] = 64
    path = tmp_path / "edited.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": wrong, "stage": "s"})
    with pytest.raises(CheckpointError, match="edited.pt.*does not build"):
        load_trained_model(path)
    with caplog.at_level(logging.ERROR):
        assert main(["test", "--checkpoint", str(path), "--device", "cpu", "--out", str(tmp_path / "t")]) == 2
    assert "does not build the model" in caplog.text


def test_sigterm_unwinds_like_ctrl_c() -> None:
    old = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        cli_main.handle_sigterm_like_sigint()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            torch.zeros(1)  # the handler runs at the next bytecode boundary
    finally:
        signal.signal(signal.SIGTERM, old)


RAN: list[int] = []


def _payload() -> None:
    RAN.append(1)


class _Payload:
    def __reduce__(self) -> tuple:
        return _payload, ()


def test_training_checkpoint_with_a_payload_is_refused_not_run(tmp_path: Path, caplog) -> None:
    """``cmpose test`` / ``infer`` / ``train --resume`` read checkpoints with weights_only=True: a
    pickle that would call a function is refused without calling it (tests/test_checkpoint.py
    covers the weight files of ``convert`` and ``run.init``)."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "config": {}, "stage": "s", "hook": _Payload()}, path)
    with caplog.at_level(logging.ERROR):
        assert main(["test", "--checkpoint", str(path), "--device", "cpu", "--out", str(tmp_path / "t")]) == 2
    assert "evil.pt" in caplog.text
    with pytest.raises(CheckpointError):
        load_trained_model(path)
    assert RAN == []
