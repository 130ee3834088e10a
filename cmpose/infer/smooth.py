"""One-Euro filtering of keypoints per track and joint (``cmpose infer --smooth``).

The One-Euro filter (Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass
Filter for Noisy Input in Interactive Systems", CHI 2012) is a first-order low-pass filter whose
cutoff frequency rises with the signal's speed: slow movements are smoothed hard (little jitter),
fast ones lightly (little lag). Per sample, with ``dt`` the time since the previous sample::

    alpha(fc)  = 1 / (1 + 1 / (2 pi fc dt))
    dx         = (x - x_prev_filtered) / dt,  dx_hat = dx_hat_prev + alpha(d_cutoff) (dx - dx_hat_prev)
    fc         = min_cutoff + beta |dx_hat|
    x_hat      = x_hat_prev + alpha(fc) (x - x_hat_prev)

The first sample passes unchanged (speed 0). Everything is causal: a frame's output depends only
on that frame and earlier ones, so it works on a stream with no delay.

**Scale.** Keypoints are image pixels, so a speed in pixels/s would make ``beta`` depend on how
large the person is. Here the speed entering the cutoff is divided by the person's box size (the
longer side of the track box), so ``beta`` is in 1 / (box sizes per second) and the same value
suits near and far people. The smoothing itself (``x_hat``) stays in pixels.

**Defaults** (``min_cutoff`` 4.0 Hz, ``beta`` 2.0, ``d_cutoff`` 1.0 Hz): ``d_cutoff`` = 1 Hz is the
paper's value. ``min_cutoff`` and ``beta`` follow the paper's tuning procedure (lower
``min_cutoff`` until still joints stop jittering, raise ``beta`` until fast ones stop lagging),
done on a synthetic tuning set (seed 12, not the one the numbers are reported on): of a grid of
13 settings, (4.0, 2.0) is the one that halves the keypoints' frame-to-frame acceleration with the
smallest mAP loss. At 25 frames/s a still joint is then filtered with alpha 0.5, and a joint
moving 1 box size per second gets a 6 Hz cutoff. Smoothing costs mAP on every setting measured:
see docs/inference.md ("Smoothing").

**Low-score joints** are filtered like all others (their scores are left as they are): a joint
whose heatmap peak is weak is the noisiest, so that is where smoothing helps most; resetting
the filter there would switch it off exactly when it is needed.

**Tracks.** Each track id has its own filter state (J joints x 2 coordinates); a track id seen
for the first time (a new person, or the tracker's new id after a loss) starts fresh, and the
state of a track not seen for ``forget_after`` seconds is dropped. A gap of a few frames within a
track is filtered across with the real time difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["KeypointSmoother", "OneEuroFilter", "one_euro_alpha", "parse_smooth_params"]

DEFAULT_MIN_CUTOFF = 4.0
DEFAULT_BETA = 2.0
DEFAULT_D_CUTOFF = 1.0


def one_euro_alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    """Smoothing factor of a first-order low-pass filter of cutoff ``cutoff`` Hz sampled every
    ``dt`` seconds (Casiez et al. 2012, eq. 2-3: ``tau = 1 / (2 pi fc)``, ``alpha = 1 / (1 + tau / dt)``)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter of an array-valued signal, each element filtered independently.

    Args:
        min_cutoff: cutoff (Hz) at speed 0; lower = smoother when still, more lag.
        beta: how fast the cutoff rises with speed (Hz per unit of speed); higher = less lag on
            fast motion, more jitter.
        d_cutoff: cutoff (Hz) of the low-pass filter on the speed estimate.
    """

    def __init__(
        self,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
    ) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(
                "One-Euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; "
                f"got {min_cutoff}, {d_cutoff}, {beta}"
            )
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the state: the next sample passes unchanged."""
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float, speed_scale: float | np.ndarray = 1.0) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (seconds, increasing). The speed that sets
        the cutoff is ``|dx/dt| / speed_scale`` (e.g. the person's size in pixels)."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t or self._x.shape != x.shape:
            # first sample (or time going backwards / a new shape): start from it
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + one_euro_alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / np.asarray(speed_scale, np.float64)
        self._x = self._x + one_euro_alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()


@dataclass
class _TrackState:
    filter: OneEuroFilter
    last_t: float


class KeypointSmoother:
    """One-Euro filters per track id for a stream of frames (``cmpose infer --smooth``).

    Call :meth:`smooth` once per frame, in frame order, with that frame's people; it returns
    their keypoints filtered per (track, joint, coordinate). See the module docstring.

    Args:
        fps: the video's frame rate: frame ``i`` is at time ``i / fps`` seconds.
        min_cutoff, beta, d_cutoff: the filter's parameters (see :class:`OneEuroFilter`).
        forget_after: seconds after which an unseen track's state is dropped.
    """

    def __init__(
        self,
        fps: float,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
        forget_after: float = 2.0,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"frame rate must be > 0, got {fps}")
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates the parameters
        self.fps = float(fps)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.forget_after = float(forget_after)
        self._tracks: dict[int, _TrackState] = {}

    @property
    def num_tracks(self) -> int:
        """Tracks with a filter state now."""
        return len(self._tracks)

    def smooth(
        self,
        frame_index: int,
        track_ids: Iterable[int],
        keypoints: Iterable[np.ndarray],
        sizes: Iterable[float],
    ) -> list[np.ndarray]:
        """Filter one frame: for each person its track id, keypoints (J, 2) image pixels and box
        size (pixels, > 0; the speed is measured in box sizes per second). Returns the filtered
        (J, 2) keypoints in the same order."""
        t = frame_index / self.fps
        out = []
        for tid, kp, size in zip(track_ids, keypoints, sizes, strict=True):
            state = self._tracks.get(int(tid))
            if state is None:
                state = self._tracks[int(tid)] = _TrackState(
                    OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff), t
                )
            state.last_t = t
            out.append(state.filter(np.asarray(kp, np.float64), t, max(float(size), 1.0)))
        stale = [tid for tid, s in self._tracks.items() if t - s.last_t > self.forget_after]
        for tid in stale:
            del self._tracks[tid]
        return out

    def __call__(self, result: object) -> None:
        """Smooth a :class:`cmpose.infer.video.FrameResult` in place (its people's keypoints)."""
        people = result.people  # type: ignore[attr-defined]
        smoothed = self.smooth(
            result.frame_index,  # type: ignore[attr-defined]
            [p.track_id for p in people],
            [p.keypoints for p in people],
            [max(float(p.box[2]), float(p.box[3])) for p in people],
        )
        for p, kp in zip(people, smoothed, strict=True):
            p.keypoints = kp.astype(p.keypoints.dtype, copy=False)


def parse_smooth_params(text: str) -> tuple[float, float]:
    """``"MIN_CUTOFF,BETA"`` (e.g. ``"4.0,2.0"``) -> (min_cutoff, beta); ValueError when malformed."""
    parts = [s.strip() for s in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"expected MIN_CUTOFF,BETA (two numbers), got {text!r}")
    try:
        min_cutoff, beta = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"expected MIN_CUTOFF,BETA (two numbers), got {text!r}") from None
    if not (math.isfinite(min_cutoff) and min_cutoff > 0 and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"need MIN_CUTOFF > 0 and BETA >= 0, got {text!r}")
    return min_cutoff, beta
