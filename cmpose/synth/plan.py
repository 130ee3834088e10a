"""Everything about one video decided before a pixel is drawn: camera, background, people and
their motion, passers-by and objects of occlusion events, the unannotated far-away crowd, the hard
events. All draws come from ``np.random.default_rng((seed, video_index))``, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cmpose.synth import hard, transient
from cmpose.synth.config import FPS, SynthConfig
from cmpose.synth.motion import plan_motion
from cmpose.synth.render import Style, sample_style
from cmpose.synth.scene import Camera, SceneObject, make_background, make_camera, make_distractors
from cmpose.synth.skeleton import BodyShape, forward_kinematics, sample_body

OCCLUDER_KINDS = ("pole", "crate", "board", "bush", "panel")
# (width, height) ranges of occluders, in units of the occluded person's height
_OCCLUDER_SIZE = {
    "pole": ((0.06, 0.12), (1.3, 2.0)),
    "crate": ((0.4, 0.8), (0.3, 0.55)),
    "board": ((0.35, 0.6), (0.75, 0.95)),
    "bush": ((0.5, 0.9), (0.35, 0.6)),
    "panel": ((0.3, 0.5), (0.7, 1.1)),
}


@dataclass
class Person:
    """One drawn person over the T frames of a video.

    ``joints3d`` (T, 17, 3) and ``extras3d`` (T, E, 3) are in the skeleton's own coordinates (units
    of the person's height, feet on the ground, before placement and camera). The person stands on
    world y ``ground``, is ``height`` world pixels tall, with its root at world x ``root`` (T,).
    ``depth`` is the scene depth (larger is nearer, drawn later); ``track_id`` -1 marks the
    unannotated crowd. ``place`` fills ``joints`` (T, 17, 2) and ``extras`` (T, E, 2) in image
    pixels and ``px`` (T,), the height in image pixels.
    """

    track_id: int
    body: BodyShape
    style: Style
    joints3d: np.ndarray
    extras3d: np.ndarray
    yaw: np.ndarray
    height: float
    ground: float
    root: np.ndarray
    depth: float
    activities: list[tuple[int, str]] = field(default_factory=list)
    joints: np.ndarray = field(default_factory=lambda: np.zeros((0, 17, 2)))
    extras: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2)))
    px: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def depth_z(self) -> np.ndarray:
        """(T, 17) joint depth towards the camera (orders the limbs when drawing)."""
        return self.joints3d[..., 2]

    def world(self, points3d: np.ndarray) -> np.ndarray:
        """(T, K, 3) skeleton coordinates -> (T, K, 2) world pixels."""
        x = self.root[:, None] + self.height * points3d[..., 0]
        return np.stack([x, self.ground - self.height * points3d[..., 1]], -1)

    def place(self, camera: Camera) -> None:
        self.joints = camera.to_image_all(self.world(self.joints3d))
        self.extras = camera.to_image_all(self.world(self.extras3d))
        self.px = self.height * camera.zoom


@dataclass
class VideoPlan:
    index: int
    name: str  # e.g. 000003_mpii_test
    number: int  # the 6-digit video number
    split: str  # "train" or "val"
    size: tuple[int, int]
    n_frames: int
    labelled: np.ndarray  # (T,) bool
    seed: int
    camera: Camera
    background: np.ndarray
    people: list[Person]  # annotated: the video's people, then passers-by
    crowd: list[Person]
    distractors: list[SceneObject]
    occluders: list[SceneObject]
    events: list[hard.HardEvent]
    noise: np.ndarray | None  # low-light sensor noise field, when the video has low light
    # Version 2: short events around labelled frames (their objects are in ``occluders``).
    transients: list[transient.TransientEvent] = field(default_factory=list)


def _scale(rng: np.random.Generator, depth: float, height: int) -> tuple[float, float]:
    """(height in world px, ground y) of a person at scene depth 0 (far) .. 1 (near)."""
    return height * (0.34 + 0.38 * depth) * rng.uniform(0.92, 1.08), height * (0.6 + 0.3 * depth)


def _person(
    rng: np.random.Generator,
    n_frames: int,
    track_id: int,
    depth: float,
    size_ground: tuple[float, float],
    lane: tuple[float, float],
    fast: bool = False,
    only: tuple[str, ...] | None = None,
    direction: int = 0,
) -> Person:
    """A person ``height`` world px tall standing on ``ground`` (``size_ground``), moving within
    ``lane`` (world x range of the whole body)."""
    h, ground = size_ground
    body = sample_body(rng)
    lo, hi = lane[0] + 0.25 * h, lane[1] - 0.25 * h  # the root's range (``fit`` does the rest)
    if hi < lo:
        lo = hi = (lane[0] + lane[1]) / 2
    x0 = rng.uniform(lo, hi)
    motion = plan_motion(rng, n_frames, FPS, ((lo - x0) / h, (hi - x0) / h), 0.0, fast, only, direction)
    j3, e3 = forward_kinematics(motion.angles, body)
    j3[..., 1] += motion.lift[:, None]
    e3[..., 1] += motion.lift[:, None]
    style = sample_style(rng, h)
    root = x0 + h * motion.dx
    return Person(
        track_id, body, style, j3, e3, motion.angles[:, 0], h, ground, root, depth, motion.activities
    )


def fit(person: Person, lane: tuple[float, float], camera: Camera, margin: float = 2.0) -> None:
    """Keep the whole body inside the image (``margin`` px) in every frame, shrinking the person or
    raising its ground if needed, and inside its lane by a constant shift (a smooth path stays
    smooth). Jumps, raised arms and the camera's zoom are what push people out."""
    _, H = camera.size
    pts = np.concatenate([person.joints3d, person.extras3d], 1)  # (T, K, 3)
    top = pts[..., 1].max(1) + 0.02  # the head's outline reaches a little above head_top
    # image y of the top: (ground - height * top - cy) * zoom + H / 2 >= margin
    room = person.ground - camera.cy + (H / 2 - margin) / camera.zoom
    person.height = float(min(person.height, (room / top).min()))
    person.ground = float(min(person.ground, (camera.cy + (H / 2 - 1 - margin) / camera.zoom).min()))
    for attempt in range(9):  # a lane too narrow for the motion (raised arms, jumping jacks): shrink
        x = person.root[:, None] + person.height * pts[..., 0]
        lo, hi = lane[0] - x.min(), lane[1] - x.max()  # allowed shifts
        if lo <= hi or attempt == 8:
            break
        person.height *= 0.93
    person.root = person.root + (float(np.clip(0.0, lo, hi)) if lo <= hi else (lo + hi) / 2)


def plan_video(index: int, config: SynthConfig, split: str) -> VideoPlan:
    """The whole plan of video ``index`` (0-based) of ``config``, in ``split`` "train" or "val"."""
    rng = np.random.default_rng((config.seed, index))
    h = config.size[1]
    T = config.frames
    camera = make_camera(rng, T, config.size, FPS)
    background = make_background(rng, config.size, camera.margin)
    n_people = int(rng.integers(config.people[0], config.people[1] + 1))
    events = hard.schedule(rng, n_people, T, config.hard_ratio)
    vis_lo, vis_hi = camera.always_visible()
    depths = rng.uniform(0, 1, n_people)
    sizes = [_scale(rng, d, h) for d in depths]
    # Side by side, each in a lane as wide as its person is tall: without hard cases nobody
    # overlaps anybody or leaves the frame.
    order = rng.permutation(n_people)
    widths = np.array([sizes[p][0] for p in order])
    edges = vis_lo + np.concatenate([[0.0], np.cumsum(widths)]) / widths.sum() * (vis_hi - vis_lo)
    lanes = {int(p): (edges[i], edges[i + 1]) for i, p in enumerate(order)}
    people: list[Person] = []
    for p in range(n_people):
        fast = bool(hard.person_events(events, p, "motion_blur"))
        person = _person(rng, T, p, float(depths[p]), sizes[p], lanes[p], fast=fast)
        fit(person, lanes[p], camera)
        for ev in hard.person_events(events, p, "truncation"):
            # Walk out over the nearer border (and back): entering and leaving the frame.
            centre = (lanes[p][0] + lanes[p][1]) / 2
            beyond = rng.uniform(0.0, 0.35) * person.height
            target = vis_lo - beyond if centre - vis_lo < vis_hi - centre else vis_hi + beyond
            person.root = person.root + hard.window(T, ev, ramp=5) * (target - person.root)
        people.append(person)

    occluders: list[SceneObject] = []
    for ev in (e for e in events if e.kind == "occlusion"):
        thing = _occlusion(rng, ev, people, camera, T)
        if isinstance(thing, Person):
            people.append(thing)
        else:
            occluders.append(thing)

    for person in people:
        person.place(camera)
    crowd = _crowd(rng, camera, T, config.size, [p.world(p.joints3d) for p in people])
    distractors = make_distractors(rng, T, config.size, camera.margin)
    noise = None
    if any(e.kind == "low_light" for e in events):
        noise = hard.sensor_noise(rng, config.size)
    number = index + 1
    name = f"{number:06d}_mpii_{'train' if split == 'train' else 'test'}"
    t = np.arange(T)
    labelled = np.ones(T, bool) if split == "train" else t % 4 == 0
    transients: list[transient.TransientEvent] = []
    if config.version >= 2:
        # A stream of its own (after the detector's (seed, i, 1) and its unlabelled frames'
        # (seed, i, 2)): version 2 videos are version 1's plus the transient events.
        t_rng = np.random.default_rng((config.seed, index, 3))
        transients = transient.schedule(
            t_rng, labelled, config.transient_ratio, [p.joints for p in people], config.size
        )
        occluders += transient.objects(
            t_rng,
            transients,
            [p.world(p.joints3d) for p in people],
            [p.height for p in people],
            [p.ground for p in people],
            [p.depth for p in people],
        )
    return VideoPlan(
        index=index, name=name, number=number, split=split, size=config.size, n_frames=T, labelled=labelled,
        seed=config.seed, camera=camera, background=background, people=people, crowd=crowd,
        distractors=distractors, occluders=occluders, events=events, noise=noise, transients=transients,
    )  # fmt: skip


def _occlusion(
    rng: np.random.Generator, ev: hard.HardEvent, people: list[Person], camera: Camera, T: int
) -> Person | SceneObject:
    """What passes in front of person ``ev.target`` during the event: another person walking by
    (35 %), or an object (pole, crate, sign board, bush, panel) sliding past."""
    target, t_mid = people[ev.target], (ev.start + ev.end - 1) // 2
    th = target.height
    way = int(rng.choice([-1, 1]))
    if rng.random() < 0.35:
        depth = target.depth + float(rng.uniform(0.08, 0.3))
        size_ground = _scale(rng, depth, camera.size[1])
        passer = _person(rng, T, len(people), depth, size_ground, (-1e6, 1e6), only=("walk",), direction=way)
        passer.root = passer.root - passer.root[t_mid] + target.root[t_mid]
        fit(passer, (-np.inf, np.inf), camera)  # only vertically: it walks through the frame
        return passer
    kind = str(rng.choice(OCCLUDER_KINDS))
    (w0, w1), (h0, h1) = _OCCLUDER_SIZE[kind]
    ow, oh = rng.uniform(w0, w1) * th, rng.uniform(h0, h1) * th
    # Slow enough to stay over the person's body (about 0.45 heights wide) for the event's window,
    # following the person while it lasts, then drifting on.
    speed = np.clip(0.6 * (0.45 * th + ow) / max(ev.end - ev.start, 1), 0.002 * th, 0.04 * th)
    t = np.arange(T)
    x = target.root[np.clip(t, ev.start, ev.end - 1)] + way * speed * (t - t_mid)
    y = np.full(T, target.ground + 0.03 * th)
    seed = int(rng.integers(1 << 30))
    return SceneObject(kind, x, y, ow, oh, _occluder_colour(rng), target.depth + 1e-3, seed)


def _occluder_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(20, 230, 3))


def _crowd(
    rng: np.random.Generator, camera: Camera, T: int, size: tuple[int, int], main_world: list[np.ndarray]
) -> list[Person]:
    """In half of the videos, 3-7 tiny far-away people (drawn, not annotated, inside an ignore
    region), placed where they overlap the annotated people's joints least."""
    w, h = size
    if rng.random() < 0.5:
        return []
    n = int(rng.integers(3, 8))
    ground = h * rng.uniform(0.5, 0.56)
    spread = w * rng.uniform(0.05, 0.12)
    lo, hi = camera.always_visible()
    candidates = np.linspace(lo + spread, hi - spread, 9)
    joints = np.concatenate([j.reshape(-1, 2) for j in main_world]) if main_world else np.zeros((0, 2))
    top = ground - 0.12 * h
    inside = (joints[:, 1] > top) & (joints[:, 1] < ground + 0.02 * h)
    cost = [np.sum(inside & (np.abs(joints[:, 0] - c) < spread + 0.04 * w)) for c in candidates]
    centre = candidates[int(np.argmin(cost))]
    crowd = []
    for k in range(n):
        sg = (h * rng.uniform(0.045, 0.085), ground + rng.uniform(-0.01, 0.01) * h)
        x = centre + spread * (2 * k / max(n - 1, 1) - 1) * 0.9
        person = _person(rng, T, -1, -2.0 + 0.01 * k, sg, (x, x), only=("stand", "wave", "turn"))
        person.place(camera)
        crowd.append(person)
    return crowd
