"""Hard cases: which ones a video gets (``schedule``), the image effects, and the labels.

The schedule is a list of events, each a label, a time window and a target (a person, or the
whole frame for defocus and low light). Events are drawn until they cover about ``hard_ratio`` of
the video's person-frames. The labels written into the annotations are then *measured* on the
rendered frame (a joint covered by someone else, a limb actually blurred, a joint outside the
image), so they hold also where a scheduled event happened to have no effect, or where something
hard happened by chance (two people crossing).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.synth.config import HARD_LABELS

FRAME_LEVEL = ("defocus", "low_light")  # these affect every person in the frame
# Limb groups blurred together: joints (PT18 indices) whose fastest one sets the blur.
LIMB_GROUPS: tuple[tuple[int, ...], ...] = ((5, 7, 9), (6, 8, 10), (11, 13, 15), (12, 14, 16), (0, 1, 2))
MIN_BLUR_PX = 3.0  # shorter streaks are not labelled (they are hardly visible)


@dataclass(frozen=True)
class HardEvent:
    """``kind`` in HARD_LABELS, frames ``start`` .. ``end - 1``, ``target`` person index (-1: the
    whole frame), ``strength`` in 0..1 (blur size, darkness)."""

    kind: str
    start: int
    end: int
    target: int
    strength: float

    def active(self, t: int) -> bool:
        return self.start <= t < self.end


def schedule(rng: np.random.Generator, n_people: int, n_frames: int, ratio: float) -> list[HardEvent]:
    """Events covering about ``ratio`` of the ``n_people * n_frames`` person-frames.

    Each event lasts 20-50 % of the video (at least 4 frames) and is placed where it covers the
    most person-frames not covered yet, so that coverage grows in step with ``ratio`` up to 1. The
    event that would overshoot the target is kept with the probability that makes the expected
    coverage right."""
    goal = ratio * n_people * n_frames
    covered = np.zeros((n_people, n_frames), bool)
    events: list[HardEvent] = []
    while covered.sum() < goal:
        kind = str(rng.choice(HARD_LABELS))
        length = min(n_frames, max(4, int(round(rng.uniform(0.2, 0.5) * n_frames))))
        if kind in FRAME_LEVEL:
            target, rows = -1, slice(None)
        else:
            free = (~covered).sum(1)
            target = int(rng.choice(np.flatnonzero(free == free.max())))
            rows = slice(target, target + 1)
        # new person-frames covered by each possible start
        free_t = (~covered[rows]).sum(0)
        gain = np.convolve(free_t, np.ones(length, int), "valid")
        start = int(rng.choice(np.flatnonzero(gain == gain.max())))
        new = int(gain[start])
        if new == 0:
            break
        if covered.sum() + new > goal and rng.random() > (goal - covered.sum()) / new:
            break
        covered[rows, start : start + length] = True
        events.append(HardEvent(kind, start, start + length, target, float(rng.uniform(0.3, 1.0))))
    return events


def person_events(events: list[HardEvent], person: int, kind: str) -> list[HardEvent]:
    return [e for e in events if e.target == person and e.kind == kind]


def window(n_frames: int, event: HardEvent, ramp: int = 8) -> np.ndarray:
    """(T,) 0..1 weight: 1 inside the event, smooth ramps of up to ``ramp`` frames inside its
    ends (none at the video's own ends, so a person can enter or leave at the first/last frame)."""
    t = np.arange(n_frames, dtype=np.float64)
    r = max(min(ramp, (event.end - event.start) // 3), 1)
    up = np.ones(n_frames) if event.start == 0 else np.clip((t - event.start + 1) / r, 0, 1)
    down = np.ones(n_frames) if event.end == n_frames else np.clip((event.end - t) / r, 0, 1)
    w = np.minimum(up, down)
    return w * w * (3 - 2 * w)


def defocus(img: np.ndarray, strength: float) -> np.ndarray:
    """Whole-frame out-of-focus blur, sigma 0.4-1.2 % of the frame height."""
    sigma = (0.004 + 0.008 * strength) * img.shape[0]
    return cv2.GaussianBlur(img, (0, 0), sigma)


def low_light(img: np.ndarray, strength: float, noise: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """Dark, blue-ish, noisy frame: gain 0.5 .. 0.2 plus sensor noise, a crop at ``offset`` of
    ``noise`` (H + m, W + m, 3) int16 (drawn once per video: the same sensor)."""
    h, w = img.shape[:2]
    g = 1.0 - 0.6 * strength
    gain = np.array([[0.55 * g, 0, 0, 6], [0, 0.5 * g, 0, 6], [0, 0, 0.45 * g, 6]], np.float32)  # BGR
    oy, ox = offset
    return cv2.add(cv2.transform(img, gain), noise[oy : oy + h, ox : ox + w], dtype=cv2.CV_8U)


def sensor_noise(rng: np.random.Generator, size: tuple[int, int], margin: int = 32) -> np.ndarray:
    """(h + margin, w + margin, 3) int16 noise field, sigma 4-14 grey levels."""
    w, h = size
    sigma = rng.uniform(4, 14)
    return np.round(rng.standard_normal((h + margin, w + margin, 3), dtype=np.float32) * sigma).astype(
        np.int16
    )


def blur_streak(img: np.ndarray, box: np.ndarray, velocity: np.ndarray) -> None:
    """Motion-blur the pixels of ``box`` (x0, y0, x1, y1) in place along ``velocity`` (px): a line
    kernel as long as the motion during the exposure."""
    length = float(np.hypot(*velocity))
    k = int(np.ceil(length)) | 1
    h, w = img.shape[:2]
    x0, y0 = np.maximum(np.floor(box[:2]).astype(int) - k, 0)
    x1, y1 = np.minimum(np.ceil(box[2:]).astype(int) + k + 1, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    kernel = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    d = velocity / max(length, 1e-6) * (k - 1) / 2
    cv2.line(
        kernel,
        (int(round(c - d[0])), int(round(c - d[1]))),
        (int(round(c + d[0])), int(round(c + d[1]))),
        1.0,
        1,
    )
    kernel /= kernel.sum()
    roi = img[y0:y1, x0:x1]
    roi[:] = cv2.filter2D(roi, -1, kernel, borderType=cv2.BORDER_REFLECT)


def limb_streaks(
    joints: np.ndarray, t: int, strength: float, scale_px: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Limb groups fast enough to blur at frame t: (box (4,), streak vector (2,)) each.

    joints: (T, 17, 2) image positions. The streak is the group's fastest joint's motion over
    0.3-0.8 frame of exposure (image motion: camera pan included), capped at 10 % of the height."""
    T = joints.shape[0]
    a, b = max(t - 1, 0), min(t + 1, T - 1)
    if b == a:
        return []
    vel = (joints[b] - joints[a]) / (b - a)
    out = []
    exposure = 0.3 + 0.5 * strength
    for group in LIMB_GROUPS:
        g = list(group)
        speed = np.hypot(vel[g, 0], vel[g, 1])
        streak = vel[g[int(speed.argmax())]] * exposure
        n = float(np.hypot(*streak))
        if n < MIN_BLUR_PX:
            continue
        streak = streak * min(1.0, 0.1 * scale_px / n)
        pts = joints[t, g]
        pad = 0.09 * scale_px  # limb width and the hand or foot beyond the last joint
        out.append((np.concatenate([pts.min(0) - pad, pts.max(0) + pad]), streak))
    return out
