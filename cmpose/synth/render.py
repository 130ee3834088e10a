"""Drawing people with OpenCV primitives: tapered limbs with outlines, a textured torso, head with
hair and face, hands and shoes, in depth order.

Every shape is drawn twice: anti-aliased into the image, and without anti-aliasing into an
``owner`` map (uint8, one value per person or occluder) that says who covers each pixel. The
generator reads joint visibility off the owner map, so the "visible" flags in the annotations are
exactly what the image shows. No colour tells left from right (real footage has no such cue).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.synth.skeleton import TORSO, BodyShape, E

SHIFT = 4  # sub-pixel bits for OpenCV drawing: joints keep their fractional position
_ONE = 1 << SHIFT


@dataclass(frozen=True)
class Style:
    """Colours (BGR) and clothing of one person."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    shoes: tuple[int, int, int]
    long_sleeves: bool
    shorts: bool
    texture: np.ndarray | None  # shirt pattern tile (h, w, 3) uint8, or plain


_SKINS = np.array([[60, 90, 140], [80, 120, 180], [110, 150, 205], [140, 180, 225], [45, 65, 100]])


def random_colour(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    """A BGR colour with every channel in lo..hi - 1."""
    return tuple(int(c) for c in rng.integers(lo, hi, 3))


def _texture(rng: np.random.Generator, base: tuple[int, int, int], period: float) -> np.ndarray | None:
    """A clothing pattern (stripes, checks, dots or noise) around ``base``; None for plain cloth."""
    kind = rng.choice(5)
    if kind == 0:
        return None
    size = 64
    tile = np.empty((size, size, 3), np.uint8)
    tile[:] = base
    other = random_colour(rng)
    p = max(int(period), 3)
    if kind == 1:  # stripes, horizontal or vertical
        stripe = (np.arange(size) // p) % 2 == 1
        tile[stripe if rng.random() < 0.6 else (slice(None), stripe)] = other
    elif kind == 2:  # checks
        yy, xx = np.mgrid[:size, :size] // p
        tile[(yy + xx) % 2 == 1] = other
    elif kind == 3:  # dots
        for y in range(p // 2, size, p):
            for x in range((y // p % 2) * p // 2, size, p):
                cv2.circle(tile, (x, y), max(p // 4, 1), other, -1, cv2.LINE_AA)
    else:  # mottled noise (camouflage, knit)
        low = cv2.resize(rng.normal(0, 30, (6, 6, 3)), (size, size), interpolation=cv2.INTER_CUBIC)
        tile = np.clip(tile + low, 0, 255).astype(np.uint8)
    return tile


def sample_style(rng: np.random.Generator, height_px: float) -> Style:
    """Skin, hair and clothes of one person; patterns scale with its height in pixels."""
    skin = _SKINS[rng.integers(len(_SKINS))] + rng.integers(-15, 16, 3)
    shirt = random_colour(rng)
    return Style(
        skin=tuple(int(c) for c in np.clip(skin, 0, 255)),
        hair=random_colour(rng, 10, 120) if rng.random() < 0.85 else random_colour(rng, 150, 230),
        shirt=shirt,
        pants=random_colour(rng, 15, 200),
        shoes=random_colour(rng, 5, 120),
        long_sleeves=bool(rng.random() < 0.5),
        shorts=bool(rng.random() < 0.25),
        texture=_texture(rng, shirt, max(height_px * 0.02, 3)),
    )


def darker(c: tuple[int, int, int], f: float = 0.55) -> tuple[int, int, int]:
    """The colour scaled by f (outlines, shadows)."""
    return tuple(int(v * f) for v in c)


class Canvas:
    """The image and the owner map being drawn; ``value`` is what the current shapes write into
    ``owner`` (None: draw into the image only, e.g. the unannotated crowd)."""

    def __init__(self, image: np.ndarray, owner: np.ndarray | None):
        self.image, self.owner, self.value = image, owner, 0

    @staticmethod
    def _pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))

    def poly(self, pts: np.ndarray, colour: tuple, texture: np.ndarray | None = None) -> None:
        """A filled convex polygon (N, 2); with ``texture`` the pattern fills it instead of colour."""
        ip = np.round(pts * _ONE).astype(np.int32)
        if texture is None:
            cv2.fillConvexPoly(self.image, ip, colour, cv2.LINE_AA, SHIFT)
        else:
            self._textured(pts, ip, texture)
        if self.owner is not None:
            cv2.fillConvexPoly(self.owner, ip, self.value, cv2.LINE_8, SHIFT)

    def _textured(self, pts: np.ndarray, ip: np.ndarray, texture: np.ndarray) -> None:
        h, w = self.image.shape[:2]
        x0, y0 = np.maximum(np.floor(pts.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(pts.max(0)).astype(int) + 1, [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, ip - np.array([x0, y0]) * _ONE, 1, cv2.LINE_8, SHIFT)
        th, tw = texture.shape[:2]
        tile = np.tile(texture, ((y1 - y0) // th + 1, (x1 - x0) // tw + 1, 1))[: y1 - y0, : x1 - x0]
        np.copyto(self.image[y0:y1, x0:x1], tile, where=mask[..., None].astype(bool))

    def circle(self, c: np.ndarray, r: float, colour: tuple) -> None:
        ir = max(int(round(r * _ONE)), _ONE)
        cv2.circle(self.image, self._pt(c), ir, colour, -1, cv2.LINE_AA, SHIFT)
        if self.owner is not None:
            cv2.circle(self.owner, self._pt(c), ir, self.value, -1, cv2.LINE_8, SHIFT)

    def ellipse(self, c: np.ndarray, axes: tuple[float, float], angle: float, colour: tuple) -> None:
        ax = (max(int(round(axes[0] * _ONE)), _ONE), max(int(round(axes[1] * _ONE)), _ONE))
        cv2.ellipse(self.image, self._pt(c), ax, angle, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
        if self.owner is not None:
            cv2.ellipse(self.owner, self._pt(c), ax, angle, 0, 360, self.value, -1, cv2.LINE_8, SHIFT)

    def limbs(
        self,
        p0: np.ndarray,
        p1: np.ndarray,
        r0: np.ndarray,
        r1: np.ndarray,
        colours: list[tuple],
        edge: float,
    ) -> None:
        """Tapered capsules from p0 (L, 2) with radius r0 (L,) to p1 with radius r1, in order, each
        with a darker outline of width ``edge`` (none when 0): outlines separate overlapping limbs of
        the same colour. The geometry of all L limbs is computed at once (speed)."""
        d = p1 - p0
        n = np.hypot(d[:, 0], d[:, 1])
        perp = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(n, 1e-6)[:, None]
        has_quad = (n >= 1e-6).tolist()
        c0 = [tuple(c) for c in np.round(p0 * _ONE).astype(int).tolist()]
        c1 = [tuple(c) for c in np.round(p1 * _ONE).astype(int).tolist()]

        def shape(grow: float) -> tuple[np.ndarray, list[int], list[int]]:
            a0, a1 = (r0 + grow)[:, None], (r1 + grow)[:, None]
            quads = np.stack([p0 + a0 * perp, p1 + a1 * perp, p1 - a1 * perp, p0 - a0 * perp], 1)
            q = np.round(quads * _ONE).astype(np.int32)
            rad = np.maximum(np.round(np.concatenate([a0, a1], 1) * _ONE), _ONE).astype(int)
            return q, rad[:, 0].tolist(), rad[:, 1].tolist()

        fill = shape(0.0)
        outer = shape(edge) if edge > 0 else fill
        passes = [(outer, True), (fill, False)] if edge > 0 else [(fill, False)]
        for i, colour in enumerate(colours):
            for (q, ra0, ra1), is_outline in passes:
                col = darker(colour) if is_outline else colour
                if has_quad[i]:
                    cv2.fillConvexPoly(self.image, q[i], col, cv2.LINE_AA, SHIFT)
                cv2.circle(self.image, c0[i], ra0[i], col, -1, cv2.LINE_AA, SHIFT)
                cv2.circle(self.image, c1[i], ra1[i], col, -1, cv2.LINE_AA, SHIFT)
            if self.owner is not None:
                q, ra0, ra1 = outer
                if has_quad[i]:
                    cv2.fillConvexPoly(self.owner, q[i], self.value, cv2.LINE_8, SHIFT)
                cv2.circle(self.owner, c0[i], ra0[i], self.value, -1, cv2.LINE_8, SHIFT)
                cv2.circle(self.owner, c1[i], ra1[i], self.value, -1, cv2.LINE_8, SHIFT)


def head_ellipse(joints: np.ndarray, extras: np.ndarray, body: BodyShape, px: float) -> tuple:
    """(centre (2,), (semi-axis across, semi-axis along), angle in degrees) of the drawn head; the
    head_top keypoint lies inside it (the nose has its own circle)."""
    axis = joints[2] - joints[1]
    angle = np.degrees(np.arctan2(axis[1], axis[0])) + 90.0 if np.hypot(*axis) > 1e-3 else 0.0
    # At least a pixel beyond head_top (0.5 head from the centre), so tiny heads still hold it.
    along = max(0.56 * body.head * px, 0.5 * body.head * px + 1.0)
    return extras[E["head"]], (max(0.45 * body.head * px, 1.0), along), angle


def draw_person(
    canvas: Canvas,
    joints: np.ndarray,
    extras: np.ndarray,
    depth: np.ndarray,
    yaw: float,
    body: BodyShape,
    px: float,
    style: Style,
) -> None:
    """Draw one person.

    Args:
        joints: (17, 2) image positions; extras: (len(EXTRAS), 2) image positions.
        depth: (17,) joint depth towards the camera (orders the limbs: far limbs first).
        yaw: the body's yaw (radians), for the face.
        px: image pixels per body unit (the person's height in pixels).
    """
    detail = px >= 40  # tiny far-away people: no outlines, textures or faces (speed)
    edge = max(0.006 * px, 0.8) if detail else 0.0
    fore = style.shirt if style.long_sleeves else style.skin
    shin = style.skin if style.shorts else style.pants
    j, x = joints, extras
    b = body
    # Each group: (depth, [(start point, end point, start radius, end radius, colour), ...]).
    groups = []
    for sh, el, wr, hand in ((5, 7, 9, "l_hand"), (6, 8, 10, "r_hand")):
        segs = [
            (j[sh], j[el], b.w_upper_arm * 1.1, b.w_upper_arm * 0.85, style.shirt),
            (j[el], j[wr], b.w_forearm, b.w_forearm * 0.8, fore),
            (j[wr], x[E[hand]], b.w_forearm * 0.95, b.w_forearm * 0.75, style.skin),
        ]
        groups.append((depth[[sh, el, wr]].mean(), segs))
    for hp, kn, an, toe, heel in ((11, 13, 15, "l_toe", "l_heel"), (12, 14, 16, "r_toe", "r_heel")):
        segs = [
            (j[hp], j[kn], b.w_thigh, b.w_thigh * 0.75, style.pants),
            (j[kn], j[an], b.w_shin, b.w_shin * 0.7, shin),
            (x[E[heel]], x[E[toe]], b.w_shin * 0.65, b.w_shin * 0.5, style.shoes),
        ]
        groups.append((depth[[hp, kn, an]].mean(), segs))
    groups.sort(key=lambda g: g[0])
    centre = depth[[5, 6, 11, 12]].mean()

    def draw(segs: list) -> None:
        if segs:
            p0, p1, r0, r1, cols = zip(*segs, strict=True)
            canvas.limbs(np.array(p0), np.array(p1), np.array(r0) * px, np.array(r1) * px, list(cols), edge)

    draw([s for z, segs in groups if z < centre for s in segs])  # limbs behind the torso
    pelvis = np.array([x[E[n]] for n in ("lw_f", "lw_b", "rw_f", "rw_b", "crotch")] + [j[11], j[12]])
    canvas.poly(cv2.convexHull(pelvis.astype(np.float32))[:, 0].astype(np.float64), style.pants)
    torso = np.array([x[E[n]] for n in TORSO])
    hull = cv2.convexHull(torso.astype(np.float32))[:, 0].astype(np.float64)
    canvas.poly(hull, style.shirt, style.texture if detail else None)
    draw([(x[E["neck"]], j[1], b.w_neck, b.w_neck * 0.9, style.skin)])
    _head(canvas, j, x, yaw, body, px, style, detail)
    draw([s for z, segs in groups if z >= centre for s in segs])  # limbs in front of it


def _head(
    canvas: Canvas,
    j: np.ndarray,
    x: np.ndarray,
    yaw: float,
    body: BodyShape,
    px: float,
    style: Style,
    detail: bool,
) -> None:
    centre, axes, angle = head_ellipse(j, x, body, px)
    facing = np.cos(yaw)  # 1: towards the camera, -1: away
    nose_r = max(0.06 * body.head * px, 0.8)
    if facing < -0.2:
        # Seen from behind the head hides the nose, except its tip in a three-quarter view.
        canvas.circle(j[0], nose_r, darker(style.skin, 0.8))
    canvas.ellipse(centre, (axes[0] * 1.05, axes[1] * 1.03), angle, darker(style.hair, 0.7))
    canvas.ellipse(centre, axes, angle, style.hair)
    if facing < -0.2:
        return  # the back of the head: hair only
    to_nose = j[0] - centre
    face_c = centre + 0.3 * to_nose + 0.08 * (j[1] - centre)
    canvas.ellipse(face_c, (axes[0] * 0.82, axes[1] * 0.78), angle, style.skin)
    if facing > 0.0 and detail:
        rad = np.radians(angle)
        across = np.array([np.cos(rad), np.sin(rad)])  # head's left-right axis in the image
        up = (j[2] - j[1]) / max(np.hypot(*(j[2] - j[1])), 1e-6)
        spread = 0.17 * body.head * px * facing
        for side in (-1.0, 1.0):
            eye = j[0] + 0.13 * body.head * px * up + side * spread * across
            canvas.circle(eye, max(0.025 * body.head * px, 0.6), (30, 30, 40))
    canvas.circle(j[0], nose_r, darker(style.skin, 0.8))
