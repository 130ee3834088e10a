"""MP4 writing and reading with PyAV: padding to even sizes, frame count, fps, atomicity."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from cmpose.errors import DataError
from cmpose.viz.video import VideoInfo, VideoWriter, read_video_frames, video_info

W, H, N = 65, 49, 10


def _frame(i: int) -> np.ndarray:
    """A smooth colour gradient that moves with i, (H, W, 3) uint8 BGR."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    b = 40 + 150 * x / W + 5 * i
    g = 60 + 120 * y / H
    r = np.full_like(x, 100.0 + 10 * i)
    return np.stack([b, g, r], axis=-1).round().astype(np.uint8)


@pytest.mark.parametrize("codec", [None, "mpeg4"])
def test_round_trip(tmp_path: Path, codec: str | None) -> None:
    out = tmp_path / "clip.mp4"
    with VideoWriter(out, fps=10, size=(W, H), codec=codec) as video:
        assert video.encoded_size == (66, 50)
        for i in range(N):
            video.write(_frame(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary file left

    assert video_info(out) == VideoInfo(num_frames=N, fps=10.0, width=66, height=50)
    frames = list(read_video_frames(out))
    assert [i for i, _ in frames] == list(range(N))
    for i, img in frames:
        assert img.shape == (50, 66, 3) and img.dtype == np.uint8
        diff = np.abs(img[:H, :W].astype(np.int16) - _frame(i)).mean()
        assert diff < 6.0, (i, diff)
        # Padding replicates the last column / row.
        assert np.abs(img[:H, W].astype(np.int16) - img[:H, W - 1]).mean() < 6.0


def test_frame_selection_and_fps(tmp_path: Path) -> None:
    out = tmp_path / "ntsc.mp4"
    with VideoWriter(out, fps=29.97, size=(32, 24)) as video:
        for i in range(N):
            video.write(np.full((24, 32, 3), 20 * i, np.uint8))
    assert video_info(out).fps == pytest.approx(29.97, abs=1e-3)
    assert [i for i, _ in read_video_frames(out, start=2, step=3)] == [2, 5, 8]
    assert [i for i, _ in read_video_frames(out, start=2, stop=6, step=3)] == [2, 5]
    assert [i for i, _ in read_video_frames(out, stop=0)] == []
    for i, img in read_video_frames(out, start=4, stop=5):
        assert i == 4 and abs(float(img.mean()) - 80) < 3
    with pytest.raises(ValueError):
        read_video_frames(out, step=0)


def test_exception_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, fps=5, size=(W, H)) as video:
        video.write(_frame(0))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(ValueError, match="uint8"), VideoWriter(out, fps=5, size=(W, H)) as video:
        video.write(np.zeros((H + 1, W, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []

    # An earlier good file survives a failed rewrite.
    with VideoWriter(out, fps=5, size=(W, H)) as video:
        video.write(_frame(0))
    before = out.read_bytes()
    with pytest.raises(RuntimeError), VideoWriter(out, fps=5, size=(W, H)) as video:
        video.write(_frame(1))
        raise RuntimeError
    assert out.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_bad_files_raise_data_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    for path in (missing, garbage):
        with pytest.raises(DataError, match=path.name):
            video_info(path)
        with pytest.raises(DataError, match=path.name):
            list(read_video_frames(path))
    assert "libx264" in av.codecs_available or "mpeg4" in av.codecs_available
