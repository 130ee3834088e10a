"""Transient difficulty (generator version 2): events of 1-3 frames in the middle of labelled frames.

The hard events of ``hard.py`` last 20-50 % of a video, so the frames next to a hard keyframe are
as hard as the keyframe and a temporal model has nothing to recover. These events are short: the
frames two away from an event's middle frame are free of other transient events, so the evidence a
keyframe lacks is in its neighbours. Kinds:

- ``crossing``: a panel or sign board sweeps across a person for 1-3 frames (something passing
  close to the camera);
- ``limb``: a ball covers one arm's or leg's lower half (elbow and wrist, or knee and ankle) for
  one frame;
- ``shake``: one frame blurred along one direction (the camera jerks);
- ``defocus``: one frame out of focus;
- ``flash``: one frame over-exposed (a photo flash, a reflection).

What the annotations say is measured on the rendered frames as for the long events (an object
that misses the joints hides nothing); ``visible_dt`` records, per joint, how far the nearest
frame is where the joint is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.synth import hard
from cmpose.synth.render import random_colour
from cmpose.synth.scene import SceneObject

TRANSIENT_KINDS: tuple[str, ...] = ("crossing", "limb", "shake", "defocus", "flash")
_KIND_P = (0.35, 0.25, 0.15, 0.1, 0.15)  # occlusions are what the joint classes measure
# Event middles are at least this many frames apart: a 3-frame event at t covers t-1..t+1, so
# t-2 and t+2 (the neighbours of a T = 3 clip at step 2) stay free of other transient events.
TRANSIENT_GAP = 4
# Lower arm / lower leg (PT18 indices: elbow, wrist / knee, ankle), the upper joint's neighbour first.
LIMBS: tuple[tuple[int, int], ...] = ((7, 9), (8, 10), (13, 15), (14, 16))
# (width, height) ranges of crossing objects, in units of the crossed person's height
_CROSSING_SIZE = {"panel": ((0.3, 0.5), (0.7, 1.1)), "board": ((0.45, 0.7), (0.85, 1.0))}
_FRAME_LABEL = {"shake": "motion_blur", "defocus": "defocus", "flash": "flash"}


@dataclass(frozen=True)
class TransientEvent:
    """``kind`` in TRANSIENT_KINDS over frames ``start`` .. ``end - 1`` around a labelled frame,
    ``target`` person index (-1: the whole frame), ``strength`` in 0..1, ``angle`` the shake's
    direction (radians)."""

    kind: str
    start: int
    end: int
    target: int
    strength: float
    angle: float = 0.0

    def active(self, t: int) -> bool:
        return self.start <= t < self.end

    @property
    def frame_label(self) -> str | None:
        """The hard label every person in an affected frame gets (None: measured per person)."""
        return _FRAME_LABEL.get(self.kind)


def _in_view(joints: np.ndarray, t: int, size: tuple[int, int]) -> bool:
    """Most of the person's joints (image pixels, (T, 17, 2)) are inside the frame at t."""
    w, h = size
    xy = joints[t]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    return int(inside.sum()) >= 12


def schedule(
    rng: np.random.Generator,
    labelled: np.ndarray,
    ratio: float,
    joints: list[np.ndarray],
    size: tuple[int, int],
) -> list[TransientEvent]:
    """Events with their middle on about ``ratio`` of the labelled frames (``labelled`` (T,) bool),
    at most one per ``TRANSIENT_GAP`` frames; ``joints`` holds each person's (T, 17, 2) image
    positions (a crossing or limb event picks a person mostly in view)."""
    T = len(labelled)
    events: list[TransientEvent] = []
    last = -TRANSIENT_GAP
    for t in np.flatnonzero(labelled).tolist():
        draw = rng.random()
        if draw >= ratio or t - last < TRANSIENT_GAP:
            continue
        kind = str(rng.choice(TRANSIENT_KINDS, p=_KIND_P))
        target = -1
        if kind in ("crossing", "limb"):
            in_view = [k for k, j in enumerate(joints) if _in_view(j, t, size)]
            if not in_view:
                continue
            target = int(rng.choice(in_view))
        length = int(rng.integers(1, 4)) if kind == "crossing" else 1
        start = max(t - int(rng.integers(0, length)), 0)  # t is one of the event's frames
        end = min(start + length, T)
        events.append(
            TransientEvent(
                kind, start, end, target, float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, np.pi))
            )
        )
        last = t
    return events


def objects(
    rng: np.random.Generator,
    events: list[TransientEvent],
    world: list[np.ndarray],
    heights: list[float],
    grounds: list[float],
    depths: list[float],
) -> list[SceneObject]:
    """The objects of the crossing and limb events, drawn only during their event.

    ``world`` holds each person's (T, 17, 2) joint positions in world pixels; ``heights``,
    ``grounds`` and ``depths`` its height, ground line and scene depth."""
    out = []
    for ev in events:
        if ev.kind not in ("crossing", "limb"):
            continue
        joints, th = world[ev.target], heights[ev.target]
        T = len(joints)
        t = np.arange(T)
        present = (t >= ev.start) & (t < ev.end)
        mid = (ev.start + ev.end - 1) / 2
        if ev.kind == "crossing":
            kind = str(rng.choice(list(_CROSSING_SIZE)))
            (w0, w1), (h0, h1) = _CROSSING_SIZE[kind]
            ow, oh = rng.uniform(w0, w1) * th, rng.uniform(h0, h1) * th
            # Over the body (about 0.45 heights wide) in each of its 1-3 frames, moving fast.
            way, speed = int(rng.choice([-1, 1])), rng.uniform(0.08, 0.15) * th
            centre = joints[int(round(mid)), :, 0].mean()
            x = centre + way * speed * (t - mid)
            y = np.full(T, grounds[ev.target] + 0.03 * th)
        else:
            upper, lower = LIMBS[int(rng.integers(len(LIMBS)))]
            a, b = joints[ev.start, upper], joints[ev.start, lower]
            # A ball over both joints of the lower limb, with room for the limb's width.
            r = max(0.5 * float(np.hypot(*(b - a))) + 0.06 * th, 0.08 * th)
            ow = oh = 2 * r
            c = (a + b) / 2
            x, y = np.full(T, c[0]), np.full(T, c[1] + r)  # a ball is placed by its bottom
            kind = "ball"
        seed = int(rng.integers(1 << 30))
        out.append(
            SceneObject(kind, x, y, ow, oh, random_colour(rng), depths[ev.target] + 1e-3, seed, present)
        )
    return out


def frame_effect(image: np.ndarray, ev: TransientEvent) -> np.ndarray:
    """The frame-level effect of a shake, defocus or flash event on ``image`` (H, W, 3) uint8."""
    h, w = image.shape[:2]
    if ev.kind == "shake":
        length = (0.015 + 0.03 * ev.strength) * h  # 1.5-4.5 % of the height
        velocity = length * np.array([np.cos(ev.angle), np.sin(ev.angle)])
        out = image.copy()
        hard.blur_streak(out, np.array([0.0, 0.0, w, h]), velocity)
        return out
    if ev.kind == "defocus":
        return hard.defocus(image, ev.strength)
    if ev.kind == "flash":
        # Gain 1.4-2.2 plus an offset: bright parts clip to white and lose their edges.
        return cv2.convertScaleAbs(image, alpha=1.4 + 0.8 * ev.strength, beta=20 + 50 * ev.strength)
    return image


def visible_dt(
    seen: list[dict[int, np.ndarray]], t: int, track_id: int, annotated: np.ndarray, window: int
) -> np.ndarray:
    """(17,) int: 0 where the joint is visible in frame t, k where the nearest frame in which it is
    visible is k frames away (1 <= k <= ``window``), -1 where it is visible in none of them, and -1
    for joints not annotated in frame t.

    ``seen[f]`` maps the track id of each person annotated in frame f to its (17,) bool
    ``visible`` flags (inside the image and covered by nobody else); a person absent from a
    frame, or a frame outside the video, shows nothing."""
    out = np.full(len(annotated), -1, np.int64)
    for d in range(window + 1):
        for f in {t - d, t + d}:
            flags = seen[f].get(track_id) if 0 <= f < len(seen) else None
            if flags is not None:
                out[(out < 0) & flags] = d
    out[~annotated] = -1
    return out
