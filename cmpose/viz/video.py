"""Reading and writing videos with PyAV. Frames are (H, W, 3) uint8 BGR, as OpenCV uses them.

Writing goes to a hidden temporary file beside the target and is renamed over it only when the
writer closes without an exception, so a crash never leaves a half-written MP4.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from cmpose.errors import DataError


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it.

    Attributes:
        num_frames: frames in the video stream (counted from packets when the header has none).
        fps: average frame rate (0.0 when the file does not say).
        width, height: frame size in pixels.
    """

    num_frames: int
    fps: float
    width: int
    height: int


def _default_codec() -> str:
    # H.264 plays everywhere; PyAV wheels ship libx264, but a PyAV built against a system
    # FFmpeg may lack it (GPL), and MPEG-4 part 2 is always there.
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class VideoWriter:
    """Write BGR frames into an MP4 (H.264 if available, else MPEG-4), yuv420p.

    yuv420p stores colour at half resolution in both directions, so its frames need even sizes:
    an odd width or height is padded by one replicated column or row (right / bottom).

    Example::

        with VideoWriter(out / "demo.mp4", fps=25, size=(w, h)) as video:
            for frame in frames:
                video.write(frame)

    Args:
        path: the MP4 to write (its folder is created).
        fps: frames per second (a float such as 29.97 or a ``Fraction``).
        size: (width, height) of the frames given to ``write`` (OpenCV's order).
        codec: encoder name; None = "libx264" if PyAV has it, else "mpeg4".
        crf: libx264 constant-rate factor (18: visually lossless; x264's default is 23).
    """

    def __init__(
        self,
        path: Path,
        fps: float | Fraction,
        size: tuple[int, int],
        codec: str | None = None,
        crf: int = 18,
    ) -> None:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"bad video size {size} or fps {fps}")
        self.path = Path(path)
        self.size = (width, height)
        self.encoded_size = (width + width % 2, height + height % 2)
        self.codec = codec or _default_codec()
        self.num_frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            # The temporary name ends in .tmp, so the format is named rather than guessed from it.
            self._container = av.open(str(self._tmp), "w", format="mp4")
            # Limit the denominator so 29.97 becomes 2997/100 and not a 53-bit binary fraction.
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width, self._stream.height = self.encoded_size
            self._stream.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                self._stream.options = {"crf": str(crf)}
            else:
                # FFmpeg's default MPEG-4 bit rate (~1 Mbit/s) smears large frames; ~0.3 bit/pixel does not.
                self._stream.bit_rate = max(1_000_000, int(0.3 * width * height * float(rate)))
        except BaseException:
            self._discard()
            raise
        self._open = True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: (H, W, 3) uint8 BGR with (W, H) == ``size``."""
        if not self._open:
            raise RuntimeError(f"{self.path}: writer is closed")
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"expected a ({height}, {width}, 3) uint8 BGR frame, got {frame.shape} {frame.dtype}"
            )
        pad_w, pad_h = self.encoded_size[0] - width, self.encoded_size[1] - height
        if pad_w or pad_h:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        video_frame.pts = self.num_frames  # in units of 1/fps, the encoder's time base
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.num_frames += 1

    def close(self) -> Path:
        """Flush the encoder, close the file and move it to ``path``; returns ``path``."""
        if not self._open:
            return self.path
        self._open = False
        try:
            for packet in self._stream.encode():  # flush frames the encoder still holds (B-frames)
                self._container.mux(packet)
            self._container.close()
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and delete the temporary file; ``path`` is left as it was."""
        if self._open:
            self._open = False
            self._discard()

    def _discard(self) -> None:
        container = getattr(self, "_container", None)
        try:
            if container is not None:
                container.close()
        except av.FFmpegError:
            pass  # the file is deleted anyway; the original exception is the one to report
        finally:
            self._tmp.unlink(missing_ok=True)


def _open_video(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise DataError("no such video file", path=path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise DataError(f"cannot open video: {e}", path=path) from e
    if not container.streams.video:
        container.close()
        raise DataError("no video stream", path=path)
    return container


def video_info(path: Path) -> VideoInfo:
    """Frame count, frame rate and size of a video file.

    Raises:
        DataError: the file is missing or not a readable video.
    """
    path = Path(path)
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        num_frames = stream.frames
        if not num_frames:
            # Some containers (raw streams, some AVIs) carry no frame count: count packets instead.
            num_frames = sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(
            num_frames=int(num_frames),
            fps=float(rate) if rate else 0.0,
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
        )
    except av.FFmpegError as e:
        raise DataError(f"cannot read video: {e}", path=path) from e
    finally:
        container.close()


def read_video_frames(
    path: Path, *, start: int = 0, stop: int | None = None, step: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames ``start, start + step, ...`` (< ``stop``) as (index, (H, W, 3) uint8 BGR).

    Frames are decoded in order from the first one (no seeking, so indices are exact even in
    files with irregular timestamps). The file is checked at the call; decoding errors surface
    while iterating.

    Raises:
        DataError: the file is missing or not a decodable video.
        ValueError: bad start/stop/step.
    """
    path = Path(path)
    if start < 0 or step < 1 or (stop is not None and stop < start):
        raise ValueError(f"bad frame range start={start}, stop={stop}, step={step}")
    if not path.is_file():
        raise DataError("no such video file", path=path)
    return _decode(path, start, stop, step)


def _decode(path: Path, start: int, stop: int | None, step: int) -> Iterator[tuple[int, np.ndarray]]:
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # decode with frame threads; order is unchanged
        for index, frame in enumerate(container.decode(stream)):
            if stop is not None and index >= stop:
                break
            if index >= start and (index - start) % step == 0:
                yield index, frame.to_ndarray(format="bgr24")
    except av.FFmpegError as e:
        raise DataError(f"cannot decode video: {e}", path=path) from e
    finally:
        container.close()
