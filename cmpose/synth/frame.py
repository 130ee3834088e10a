"""Render one frame of a planned video and measure what its annotations say.

Draw order: background (through the camera), the far-away crowd, distractors, then people and
occluders from far to near, motion blur on a person's fast limbs right after that person is
drawn (so whoever is in front stays sharp), then the frame-wide defocus and low light, then the
one-frame effects of version 2's transient events (shake, defocus, flash).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.keypoints import JOINT_INDEX, NUM_JOINTS
from cmpose.synth import hard, transient
from cmpose.synth.config import ALL_HARD_LABELS
from cmpose.synth.plan import Person, VideoPlan
from cmpose.synth.render import Canvas, draw_person, head_ellipse
from cmpose.synth.scene import draw_object

OCCLUDER_VALUE = 255  # owner-map value of occluding objects; person k is k + 1
SCORED = np.ones(NUM_JOINTS, bool)
SCORED[[JOINT_INDEX["left_ear"], JOINT_INDEX["right_ear"]]] = False  # never annotated in PoseTrack18


@dataclass
class PersonFrame:
    """One annotated person in one frame: keypoints (17, 3) with v = 1 for annotated joints (inside
    the image; occluded ones too) and (0, 0, 0) otherwise; visible (17,) 1 where the joint is not
    covered by another person or object; box and head box x, y, w, h; hard labels."""

    track_id: int
    keypoints: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    head_box: np.ndarray
    hard: tuple[str, ...]


@dataclass
class FrameRender:
    """The frame (H, W, 3) BGR, the owner map (H, W) uint8 (0 nobody, person k -> k + 1,
    OCCLUDER_VALUE objects), the annotated people and the ignore regions ((V, 2) polygons)."""

    image: np.ndarray
    owner: np.ndarray
    people: list[PersonFrame]
    ignore_regions: list[np.ndarray]


def extent(person: Person, t: int) -> np.ndarray:
    """(x0, y0, x1, y1) of the drawn body (amodal: occluded parts included) at frame t."""
    pts = np.concatenate([person.joints[t], person.extras[t]])
    pad = (person.body.w_thigh + 0.01) * person.px[t]  # the widest limb
    centre, axes, _ = head_ellipse(person.joints[t], person.extras[t], person.body, person.px[t])
    r = max(axes) * 1.05
    lo = np.minimum(pts.min(0) - pad, centre - r)
    hi = np.maximum(pts.max(0) + pad, centre + r)
    return np.concatenate([lo, hi])


def head_box(person: Person, t: int) -> np.ndarray:
    """x, y, w, h of the drawn head (the ellipse's bounding box): the PCKh reference."""
    centre, (a, b), angle = head_ellipse(person.joints[t], person.extras[t], person.body, person.px[t])
    th = np.radians(angle)
    hw = np.hypot(a * np.cos(th), b * np.sin(th))
    hh = np.hypot(a * np.sin(th), b * np.cos(th))
    return np.array([centre[0] - hw, centre[1] - hh, 2 * hw, 2 * hh])


def _on_screen(box: np.ndarray, size: tuple[int, int]) -> bool:
    return box[2] >= 0 and box[3] >= 0 and box[0] <= size[0] - 1 and box[1] <= size[1] - 1


def render_frame(plan: VideoPlan, t: int, only: int | None = None) -> FrameRender:
    """Draw frame ``t``. With ``only`` = k, draw person k alone on a black frame and annotate
    nothing (for checking where a body is)."""
    w, h = plan.size
    cam = plan.camera
    if len(plan.people) >= OCCLUDER_VALUE - 1:
        raise ValueError(f"{len(plan.people)} people do not fit the uint8 owner map")
    if only is None:
        image = cv2.warpAffine(
            plan.background,
            cam.canvas_matrix(t),
            (w, h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
    else:
        image = np.zeros((h, w, 3), np.uint8)
    owner = np.zeros((h, w), np.uint8)
    canvas = Canvas(image, None)
    if only is not None:
        canvas.owner, canvas.value = owner, only + 1
        _draw(canvas, plan.people[only], t, plan.size)
        return FrameRender(image, owner, [], [])
    for person in plan.crowd:
        _draw(canvas, person, t, plan.size)
    for obj in plan.distractors:
        draw_object(canvas, obj, cam, t)
    canvas.owner = owner
    entities = [(p.depth, 0, k) for k, p in enumerate(plan.people)]
    entities += [(o.depth, 1, k) for k, o in enumerate(plan.occluders)]
    blurred = set()
    for _, is_object, k in sorted(entities):
        if is_object:
            canvas.value = OCCLUDER_VALUE
            draw_object(canvas, plan.occluders[k], cam, t)
            continue
        canvas.value = k + 1
        person = plan.people[k]
        if _draw(canvas, person, t, plan.size):
            for ev in (e for e in plan.events if e.active(t) and e.kind == "motion_blur" and e.target == k):
                for box, streak in hard.limb_streaks(person.joints, t, ev.strength, person.px[t]):
                    hard.blur_streak(image, box, streak)
                    blurred.add(k)
    frame_labels = []
    for ev in (e for e in plan.events if e.active(t)):
        if ev.kind == "defocus":
            image = hard.defocus(image, ev.strength)
        elif ev.kind == "low_light" and plan.noise is not None:
            r = np.random.default_rng((plan.seed, plan.index, 7, t))  # this frame's noise crop
            offset = (int(r.integers(0, 33)), int(r.integers(0, 33)))
            image = hard.low_light(image, ev.strength, plan.noise, offset)
        if ev.kind in hard.FRAME_LEVEL:
            frame_labels.append(ev.kind)
    for tev in (e for e in plan.transients if e.active(t) and e.frame_label):  # version 2 only
        image = transient.frame_effect(image, tev)
        frame_labels.append(tev.frame_label)
    people = []
    for k, person in enumerate(plan.people):
        labels = set(frame_labels) | ({"motion_blur"} if k in blurred else set())
        annotated = _annotate(person, k, t, owner, plan.size, labels)
        if annotated is not None:
            people.append(annotated)
    return FrameRender(image, owner, people, _ignore_regions(plan, t))


def _draw(canvas: Canvas, person: Person, t: int, size: tuple[int, int]) -> bool:
    """Draw the person if any of it is on screen; returns whether it was drawn."""
    if not _on_screen(extent(person, t), size):
        return False
    p = person
    draw_person(canvas, p.joints[t], p.extras[t], p.depth_z[t], p.yaw[t], p.body, p.px[t], p.style)
    return True


def _annotate(
    person: Person, k: int, t: int, owner: np.ndarray, size: tuple[int, int], labels: set[str]
) -> PersonFrame | None:
    w, h = size
    xy = person.joints[t]
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
    annotated = inside & SCORED
    if not annotated.any():
        return None  # nothing of it to annotate (off screen, or only the ears' slots inside)
    px = np.clip(np.round(xy).astype(int), [0, 0], [w - 1, h - 1])
    visible = annotated & (owner[px[:, 1], px[:, 0]] == k + 1)
    kp = np.zeros((NUM_JOINTS, 3))
    kp[annotated, :2] = xy[annotated]
    kp[annotated, 2] = 1.0
    lo_hi = extent(person, t)
    lo = np.clip(lo_hi[:2], 0, [w, h])
    hi = np.clip(lo_hi[2:], 0, [w, h])
    box = np.concatenate([lo, np.maximum(hi - lo, 1.0)])
    if (annotated & ~visible).any():
        labels = labels | {"occlusion"}
    if (SCORED & ~inside).any():
        labels = labels | {"truncation"}
    ordered = tuple(lab for lab in ALL_HARD_LABELS if lab in labels)
    return PersonFrame(person.track_id, kp, visible.astype(np.int64), box, head_box(person, t), ordered)


def _ignore_regions(plan: VideoPlan, t: int) -> list[np.ndarray]:
    """One rectangle around the crowd (its people are drawn but too small to annotate)."""
    if not plan.crowd:
        return []
    boxes = np.array([extent(p, t) for p in plan.crowd])
    pad = 0.01 * plan.size[1] + 2
    x0, y0 = np.floor(boxes[:, :2].min(0) - pad)
    x1, y1 = np.ceil(boxes[:, 2:].max(0) + pad)
    w, h = plan.size
    if x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1:
        return []
    return [np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])]
