"""Kinematic skeleton: joint angles -> 3D joint positions of one person over T frames.

Body frame, in units of the person's standing height: x to the person's **left**, y up, z
forward. A yaw of 0 faces the camera (the person's left then appears on the image's right, as in
real footage), +90 degrees faces image right. Bones are rigid, so limb lengths are exact
constants of the person; everything is vectorised over T.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmpose.keypoints import NUM_JOINTS

# Degrees of freedom, in the column order of an angle array (T, D); radians.
DOF: tuple[str, ...] = (
    "yaw",  # whole body about the vertical axis
    "pitch",  # upper body bent forward at the hips
    "roll",  # upper body leaning to the side
    "head_pitch",  # looking down
    "head_yaw",
    "l_sh_flex", "l_sh_abd", "l_elbow",
    "r_sh_flex", "r_sh_abd", "r_elbow",
    "l_hip_flex", "l_hip_abd", "l_knee",
    "r_hip_flex", "r_hip_abd", "r_knee",
)  # fmt: skip
D = {name: i for i, name in enumerate(DOF)}
NUM_DOF = len(DOF)

# Points that are drawn but are not PoseTrack keypoints, in the order of ``extras``.
# The torso's corners: (l)eft / (r)ight (s)houlder or (w)aist, (f)ront or (b)ack.
TORSO: tuple[str, ...] = ("ls_f", "ls_b", "rs_f", "rs_b", "lw_f", "lw_b", "rw_f", "rw_b")
EXTRAS: tuple[str, ...] = (
    "pelvis", "neck", "l_hand", "r_hand", "l_toe", "r_toe", "l_heel", "r_heel", "head", "crotch", *TORSO
)  # fmt: skip
E = {name: i for i, name in enumerate(EXTRAS)}

# Limbs (joint index pairs) whose length is a constant of the body.
RIGID_LIMBS: tuple[tuple[int, int], ...] = (
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
)


@dataclass(frozen=True)
class BodyShape:
    """Bone lengths and half-widths of one person, in units of the standing height."""

    torso: float = 0.30  # hip line -> shoulder line
    neck: float = 0.05  # shoulder line -> head_bottom
    head: float = 0.12  # head_bottom -> head_top
    shoulder: float = 0.11  # half the shoulder width
    hip: float = 0.065  # half the distance between the hip joints
    upper_arm: float = 0.17
    forearm: float = 0.15
    hand: float = 0.07
    thigh: float = 0.245
    shin: float = 0.245
    foot: float = 0.10
    ankle: float = 0.04  # ankle height above the sole
    chest: float = 0.06  # half the torso's depth (front to back)
    # half-widths used by the renderer
    w_upper_arm: float = 0.035
    w_forearm: float = 0.028
    w_thigh: float = 0.055
    w_shin: float = 0.038
    w_neck: float = 0.03
    w_waist: float = 0.095  # half the width of the torso at the hips

    def height(self) -> float:
        """Standing height (sole to head top) before normalisation."""
        return self.ankle + self.shin + self.thigh + self.torso + self.neck + self.head


def sample_body(rng: np.random.Generator) -> BodyShape:
    """A body with per-person proportions (each length +-10 %, widths +-25 %), normalised so the
    standing height is 1."""
    base = BodyShape()
    lengths = {
        k: getattr(base, k) * rng.uniform(0.9, 1.1)
        for k in ("torso", "neck", "head", "shoulder", "hip", "upper_arm", "forearm", "hand", "thigh", "foot")
    }
    lengths["shin"] = lengths["thigh"] * rng.uniform(0.95, 1.05)
    build = rng.uniform(0.8, 1.25)  # slim .. broad: scales every width together
    widths = {
        k: getattr(base, k) * build * rng.uniform(0.9, 1.1)
        for k in ("chest", "w_upper_arm", "w_forearm", "w_thigh", "w_shin", "w_neck", "w_waist")
    }
    body = BodyShape(**lengths, **widths, ankle=base.ankle)
    s = 1.0 / body.height()
    return BodyShape(**{k: v * s for k, v in body.__dict__.items()})


def _rot_x(a: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about x; positive tips +y towards +z (a forward bend)."""
    c, s, o, i = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([i, o, o, o, c, -s, o, s, c], -1).reshape(-1, 3, 3)


def _rot_y(a: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about y; positive turns +z (forward) towards +x (image right)."""
    c, s, o, i = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, o, s, o, i, o, -s, o, c], -1).reshape(-1, 3, 3)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s, o, i = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([c, -s, o, s, c, o, o, o, i], -1).reshape(-1, 3, 3)


def _apply(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate (T, 3) or (3,) vectors by (T, 3, 3) matrices."""
    return np.einsum("tij,tj->ti", R, np.broadcast_to(v, (R.shape[0], 3)))


def _limb_frame(R_parent: np.ndarray, flex: np.ndarray, abd: np.ndarray, side: float) -> np.ndarray:
    """(T, 3, 3) frame of an upper arm or thigh: hanging down (-y) in the rest pose, swung forward
    by ``flex`` in the body's sagittal plane, then outwards (``side`` = +1 left, -1 right) by
    ``abd``. The hinge joint below it bends about the frame's own x axis, so the bend direction
    turns continuously with the limb (no switch of axes when the limb points forward)."""
    return R_parent @ _rot_z(side * abd) @ _rot_x(-flex)


def forward_kinematics(angles: np.ndarray, body: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions for (T, NUM_DOF) angles.

    Returns:
        joints: (T, 17, 3) PoseTrack18 order, x left / y up / z towards the camera after the yaw,
            feet on the ground (y = 0 at the lower sole); the ears are the head's centre (never
            annotated, kept finite for drawing).
        extras: (T, len(EXTRAS), 3) drawn points that are not keypoints.
    """
    a = np.asarray(angles, dtype=np.float64)
    T = a.shape[0]
    col = {k: a[:, i] for k, i in D.items()}
    b = body
    X, Y, Z = np.eye(3)
    R_up = _rot_x(col["pitch"]) @ _rot_z(col["roll"])  # upper body relative to the pelvis
    up, side_axis = _apply(R_up, Y), _apply(R_up, X)
    pelvis = np.zeros((T, 3))
    neck = pelvis + b.torso * up
    R_head = R_up @ _rot_y(col["head_yaw"]) @ _rot_x(col["head_pitch"])
    h_up, h_fwd = _apply(R_head, Y), _apply(R_head, Z)
    head_bottom = neck + b.neck * up
    head_top = head_bottom + b.head * h_up
    nose = head_bottom + 0.42 * b.head * h_up + 0.55 * b.head * h_fwd
    head_centre = head_bottom + 0.5 * b.head * h_up + 0.05 * b.head * h_fwd

    out = np.zeros((T, NUM_JOINTS, 3))
    ext = np.zeros((T, len(EXTRAS), 3))
    out[:, 0], out[:, 1], out[:, 2] = nose, head_bottom, head_top
    out[:, 3] = out[:, 4] = head_centre
    down = np.array([0.0, -1.0, 0.0])
    for side, sh, el, wr, hip_j, kn, an, hand, toe, heel, pre in (
        (1.0, 5, 7, 9, 11, 13, 15, "l_hand", "l_toe", "l_heel", "l_"),
        (-1.0, 6, 8, 10, 12, 14, 16, "r_hand", "r_toe", "r_heel", "r_"),
    ):
        shoulder = neck + side * b.shoulder * side_axis - 0.02 * up
        R_arm = _limb_frame(R_up, col[pre + "sh_flex"], col[pre + "sh_abd"], side)
        elbow = shoulder + b.upper_arm * _apply(R_arm, down)
        # Elbows bend the forearm forward, knees bend the shin backward: the only ways they bend.
        d_fore = _apply(R_arm @ _rot_x(-col[pre + "elbow"]), down)
        wrist = elbow + b.forearm * d_fore
        hip = pelvis + side * b.hip * X
        R_thigh = _limb_frame(
            np.broadcast_to(np.eye(3), (T, 3, 3)), col[pre + "hip_flex"], col[pre + "hip_abd"], side
        )
        knee = hip + b.thigh * _apply(R_thigh, down)
        R_shin = R_thigh @ _rot_x(col[pre + "knee"])
        d_sh, foot_dir = _apply(R_shin, down), _apply(R_shin, Z)
        ankle = knee + b.shin * d_sh
        out[:, sh], out[:, el], out[:, wr] = shoulder, elbow, wrist
        out[:, hip_j], out[:, kn], out[:, an] = hip, knee, ankle
        ext[:, E[hand]] = wrist + b.hand * d_fore
        # Toe and heel lie at the sole, ``ankle`` below the ankle along the shin.
        ext[:, E[toe]] = ankle + b.foot * foot_dir + 0.8 * b.ankle * d_sh
        ext[:, E[heel]] = ankle - 0.25 * b.foot * foot_dir + b.ankle * d_sh
    ext[:, E["pelvis"]], ext[:, E["neck"]], ext[:, E["head"]] = pelvis, neck, head_centre
    ext[:, E["crotch"]] = pelvis - 0.06 * Y
    fwd = _apply(R_up, Z)
    for side, pre in ((1.0, "l"), (-1.0, "r")):
        # Shoulders are as wide as the upper arms' outer edge; the waist sits a little above the hips.
        sh = out[:, 5 if side > 0 else 6] + side * b.w_upper_arm * side_axis + 0.01 * up
        waist = pelvis + side * b.w_waist * X + 0.04 * Y
        for end, centre, depth in (("s", sh, b.chest * fwd), ("w", waist, 0.9 * b.chest * Z)):
            ext[:, E[f"{pre}{end}_f"]] = centre + depth
            ext[:, E[f"{pre}{end}_b"]] = centre - depth

    R_yaw = _rot_y(col["yaw"])
    out = np.einsum("tij,tkj->tki", R_yaw, out)
    ext = np.einsum("tij,tkj->tki", R_yaw, ext)
    # Stand on the lowest point of either foot.
    feet = ext[:, [E["l_toe"], E["r_toe"], E["l_heel"], E["r_heel"]], 1]
    ground = feet.min(1)[:, None]
    out[..., 1] -= ground
    ext[..., 1] -= ground
    return out, ext


def limb_lengths(joints: np.ndarray) -> np.ndarray:
    """(T, len(RIGID_LIMBS)) lengths of the rigid limbs of (T, 17, 3) joints."""
    a, b = zip(*RIGID_LIMBS, strict=True)
    return np.linalg.norm(joints[:, list(a)] - joints[:, list(b)], axis=-1)
