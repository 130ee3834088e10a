"""Motion programs: smooth joint-angle trajectories (walking, running, arm swings, waving,
turning, bending, crouching, jumping, standing).

A person's motion is a sequence of activities of 1.2-3.5 s, each a smooth function of time with
its own drawn parameters; consecutive activities are cross-faded over ``BLEND_S`` so angles never
jump. Walking and running move the person sideways (in units of their height) and end early when
they would leave the person's lane, so people stay where the scene put them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cmpose.synth.skeleton import NUM_DOF, D

BLEND_S = 0.4  # cross-fade between activities, seconds
LOCOMOTION = 0.7  # ground speed relative to the stride (<1: people stay in view longer)
DEG = np.pi / 180.0

# name -> (weight for ordinary people, weight for people scheduled for motion blur)
WEIGHTS: dict[str, tuple[float, float]] = {
    "walk": (0.28, 0.08),
    "run": (0.05, 0.3),
    "stand": (0.1, 0.0),
    "wave": (0.12, 0.15),
    "swing": (0.1, 0.22),
    "turn": (0.1, 0.0),
    "bend": (0.1, 0.0),
    "crouch": (0.08, 0.0),
    "jump": (0.07, 0.25),
}

Program = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class Motion:
    """A person's motion over T frames: angles (T, NUM_DOF) in radians, horizontal displacement
    ``dx`` (T,) from the start (0 at frame 0) and jump height ``lift`` (T,), both in units of the
    person's height, and the activities as (first frame, name)."""

    angles: np.ndarray
    dx: np.ndarray
    lift: np.ndarray
    activities: list[tuple[int, str]] = field(default_factory=list)


def _bump(u: np.ndarray, a: float = 0.0, b: float = 1.0) -> np.ndarray:
    """sin^2 bump, 0 outside [a, b], 1 in the middle, with zero slope at both ends."""
    v = np.clip((u - a) / (b - a), 0.0, 1.0)
    return np.sin(np.pi * v) ** 2


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _near(yaw: float, prev: float) -> float:
    """The angle equal to ``yaw`` (mod 360 degrees) closest to ``prev``: no spinning turns."""
    return yaw + 2 * np.pi * np.round((prev - yaw) / (2 * np.pi))


def _base(n: int, yaw: float, rng: np.random.Generator) -> np.ndarray:
    """A relaxed standing pose: arms slightly away from the body, elbows slightly bent."""
    a = np.zeros((n, NUM_DOF))
    a[:, D["yaw"]] = yaw
    for s in ("l_", "r_"):
        a[:, D[s + "sh_abd"]] = rng.uniform(6, 14) * DEG
        a[:, D[s + "elbow"]] = rng.uniform(5, 25) * DEG
        a[:, D[s + "hip_abd"]] = rng.uniform(1, 5) * DEG
        a[:, D[s + "knee"]] = rng.uniform(2, 8) * DEG
    a[:, D["head_pitch"]] = rng.uniform(-5, 12) * DEG
    return a


def _facing(rng: np.random.Generator) -> float:
    """A standing person's yaw: mostly towards the camera, sometimes in profile or from behind."""
    kind = rng.choice(3, p=[0.6, 0.25, 0.15])
    if kind == 0:
        return rng.uniform(-50, 50) * DEG
    if kind == 1:
        return rng.choice([-1, 1]) * rng.uniform(65, 110) * DEG
    return rng.uniform(150, 210) * DEG


def _gait(rng: np.random.Generator, yaw_prev: float, direction: int, run: bool) -> Program:
    f = rng.uniform(1.25, 1.55) if run else rng.uniform(0.8, 1.05)  # stride cycles per second
    hip = (rng.uniform(32, 42) if run else rng.uniform(18, 30)) * DEG
    knee = (rng.uniform(75, 100) if run else rng.uniform(35, 60)) * DEG
    arm = (rng.uniform(30, 50) if run else rng.uniform(12, 32)) * DEG
    elbow = (rng.uniform(75, 95) if run else rng.uniform(10, 30)) * DEG
    pitch = (rng.uniform(8, 15) if run else rng.uniform(0, 6)) * DEG
    yaw = _near(direction * rng.uniform(60, 105) * DEG, yaw_prev)
    speed = (1.15 if run else 0.8) * f * hip / (37 * DEG if run else 24 * DEG) * LOCOMOTION
    phase, bias = rng.uniform(0, 2 * np.pi), (8 if run else 3) * DEG

    def program(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        th = 2 * np.pi * f * tau + phase
        a = _base(len(tau), yaw, rng)
        a[:, D["pitch"]] = pitch
        a[:, D["roll"]] = 2 * DEG * np.sin(th)
        for s, sign, shift in (("l_", 1, 0.0), ("r_", -1, np.pi)):
            a[:, D[s + "hip_flex"]] = bias + sign * hip * np.sin(th)
            # The knee bends most while the leg swings forward (hip flexion growing).
            a[:, D[s + "knee"]] = 0.1 * knee + knee * ((1 + np.cos(th + shift)) / 2) ** 3
            a[:, D[s + "sh_flex"]] = -sign * arm * np.sin(th)
            a[:, D[s + "elbow"]] = elbow + 0.4 * arm * (1 + sign * np.sin(th)) / 2
        vx = np.full(len(tau), speed * np.sin(yaw))
        return a, vx, np.zeros(len(tau))

    return program


def _still(duration: float, fast: bool, rng: np.random.Generator, yaw_prev: float, name: str) -> Program:
    """Activities without locomotion; ``duration`` (s) shapes the one-off ones (turn, bend, crouch)."""
    yaw = _near(_facing(rng), yaw_prev) if name != "turn" else yaw_prev
    turn = rng.choice([-1, 1]) * rng.uniform(70, 200) * DEG
    f = rng.uniform(1.3, 1.8) if fast else rng.uniform(0.6, 1.2)
    phase = rng.uniform(0, 2 * np.pi)
    params = rng.uniform(0, 1, 8)

    def program(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(tau)
        a = _base(n, yaw, rng)
        u = tau / max(duration, 1e-6)  # 0..1 over the activity (beyond 1 in the cross-fade tail)
        th = 2 * np.pi * f * tau + phase
        lift = np.zeros(n)
        sway = 2 * DEG * np.sin(2 * np.pi * 0.3 * tau + phase)
        a[:, D["roll"]] = sway
        if name == "wave":
            arms = ("l_", "r_") if params[0] < 0.4 else (("l_",) if params[1] < 0.5 else ("r_",))
            for s in arms:
                a[:, D[s + "sh_abd"]] = (100 + 40 * params[2]) * DEG + 30 * DEG * np.sin(th)
                a[:, D[s + "sh_flex"]] = 20 * params[3] * DEG
                a[:, D[s + "elbow"]] = (30 + 40 * params[4]) * DEG + 25 * DEG * np.sin(th + 1.0)
        elif name == "swing":
            same = params[0] < 0.5  # both arms together, or alternating like a march
            amp = (60 + 30 * params[1] if fast else 40 + 40 * params[1]) * DEG
            th = th * (0.75 if fast else 0.7)  # big swings are slower than waving
            a[:, D["l_sh_flex"]] = 20 * DEG + amp * np.sin(th)
            a[:, D["r_sh_flex"]] = 20 * DEG + amp * np.sin(th + (0 if same else np.pi))
            knees = 10 * DEG * (1 + np.sin(2 * th)) / 2
            a[:, D["l_knee"]] += knees
            a[:, D["r_knee"]] += knees
            a[:, D["l_hip_flex"]] = a[:, D["r_hip_flex"]] = knees / 2
        elif name == "turn":
            a[:, D["yaw"]] = yaw + turn * _smoothstep(u)
            step = 8 * DEG * np.sin(2 * np.pi * 1.0 * tau) * _bump(u)
            a[:, D["l_hip_flex"]], a[:, D["r_hip_flex"]] = step, -step
            a[:, D["l_knee"]] += np.abs(step)
            a[:, D["r_knee"]] += np.abs(step)
        elif name == "bend":
            b = _bump(u, 0.05, 0.95)
            pitch = (35 + 45 * params[0]) * DEG * b
            a[:, D["pitch"]] = pitch
            a[:, D["head_pitch"]] += 15 * DEG * b
            for s in ("l_", "r_"):
                a[:, D[s + "sh_flex"]] = pitch * (0.7 + 0.3 * params[1])  # arms hang down
                a[:, D[s + "knee"]] += (5 + 20 * params[2]) * DEG * b
        elif name == "crouch":
            b = _bump(u, 0.05, 0.95)
            a[:, D["pitch"]] = (15 + 20 * params[0]) * DEG * b
            for s in ("l_", "r_"):
                a[:, D[s + "hip_flex"]] = (60 + 40 * params[1]) * DEG * b
                a[:, D[s + "knee"]] += (90 + 40 * params[1]) * DEG * b
                a[:, D[s + "hip_abd"]] += 10 * params[2] * DEG * b
                a[:, D[s + "sh_flex"]] = (20 + 50 * params[3]) * DEG * b
        elif name == "jump":
            period = 1.0 + 0.4 * params[0]
            c = (tau / period) % 1.0
            crouch = _bump(c, 0.0, 0.4) + _bump(c, 0.7, 1.0)
            flight = _bump(c, 0.3, 0.8)
            # sin-shaped arc: a steep take-off, slow at the top
            lift = (0.06 + 0.1 * params[1]) * _bump(c, 0.35, 0.75) ** 0.5
            jacks = params[2] < 0.5  # jumping jacks (arms and legs out) or a straight jump
            for s in ("l_", "r_"):
                a[:, D[s + "knee"]] += 60 * DEG * crouch
                a[:, D[s + "hip_flex"]] = 45 * DEG * crouch
                if jacks:
                    a[:, D[s + "sh_abd"]] += 140 * DEG * flight
                    a[:, D[s + "hip_abd"]] += 15 * DEG * flight
                else:
                    a[:, D[s + "sh_flex"]] = -30 * DEG * crouch + 150 * DEG * flight
            a[:, D["pitch"]] = 20 * DEG * crouch
        return a, np.zeros(n), lift

    return program


def plan_motion(
    rng: np.random.Generator,
    n_frames: int,
    fps: float,
    lane: tuple[float, float],
    x0: float,
    fast: bool = False,
    only: tuple[str, ...] | None = None,
    direction: int = 0,
) -> Motion:
    """A person's motion for ``n_frames`` frames.

    Args:
        lane: (lo, hi) horizontal range (in heights) the person's root may use; walking turns
            back at its ends.
        x0: starting position in the same units.
        fast: prefer fast activities (running, jumping, fast arm swings): for motion blur.
        only: restrict the activities to these names (e.g. passers-by only walk).
        direction: +1 / -1 walk right / left; 0: towards the lane's farther end.
    """
    names = list(only) if only else list(WEIGHTS)
    weights = np.array([WEIGHTS[n][1 if fast else 0] for n in names]) + 1e-3
    weights /= weights.sum()
    blend = max(int(round(BLEND_S * fps)), 1)
    angles, vx, lift = np.zeros((n_frames, NUM_DOF)), np.zeros(n_frames), np.zeros(n_frames)
    t, x, yaw_prev = 0, x0, _facing(rng)
    tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    activities: list[tuple[int, str]] = []
    lo, hi = lane
    while t < n_frames:
        name = str(rng.choice(names, p=weights))
        if name in ("walk", "run") and hi - lo < 0.3:
            name = "stand" if not only else name  # no room to walk
        length = max(int(round(rng.uniform(1.2, 3.5) * fps)), blend)
        tau = np.arange(length + blend) / fps
        if name in ("walk", "run"):
            way = direction if direction else (1 if hi - x > x - lo else -1)
            program = _gait(rng, yaw_prev, way, name == "run")
        else:
            program = _still(length / fps, fast, rng, yaw_prev, name)
        a, v, h = program(tau)
        if tail is not None:
            w = _smoothstep((np.arange(blend) + 1) / (blend + 1))
            a[:blend] = (1 - w[:, None]) * tail[0] + w[:, None] * a[:blend]
            v[:blend] = (1 - w) * tail[1] + w * v[:blend]
            h[:blend] = (1 - w) * tail[2] + w * h[:blend]
        xs = x + np.cumsum(v[:length]) / fps
        # Stop where the cross-fade into the next activity (about half the blend at this speed)
        # would end at the lane's end.
        ahead = xs + v[:length] * 0.5 * blend / fps
        outside = np.flatnonzero(((ahead < lo) & (v[:length] < 0)) | ((ahead > hi) & (v[:length] > 0)))
        if len(outside):
            length = max(int(outside[0]), blend)  # stop walking at the lane's end
        end = min(t + length, n_frames)
        k = end - t
        angles[t:end], vx[t:end], lift[t:end] = a[:k], v[:k], h[:k]
        activities.append((t, name))
        x = float(xs[k - 1])
        yaw_prev = float(a[length - 1, D["yaw"]])
        tail = (a[length : length + blend], v[length : length + blend], h[length : length + blend])
        t = end
    dx = np.concatenate([[0.0], np.cumsum(vx[:-1])]) / fps  # position before each frame's step
    return Motion(angles, dx, lift, activities)
