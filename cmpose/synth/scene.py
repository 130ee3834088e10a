"""The scene around the people: a textured background, a panning and zooming camera, moving
distractor objects behind the people and occluders passing in front of them.

Everything lives in world pixels (the image at zoom 1 with the camera centred); the camera maps
world to image with a scale and a shift per frame, so people, objects and background move together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.synth.render import Canvas, darker, random_colour


@dataclass
class Camera:
    """World point at the image centre (cx, cy) and zoom, each (T,); the background canvas extends
    ``margin`` pixels beyond the world frame on every side."""

    cx: np.ndarray
    cy: np.ndarray
    zoom: np.ndarray
    size: tuple[int, int]
    margin: int

    def to_image(self, xy: np.ndarray, t: int) -> np.ndarray:
        """World (..., 2) -> image at frame t."""
        w, h = self.size
        c = np.array([self.cx[t], self.cy[t]])
        return (xy - c) * self.zoom[t] + np.array([w / 2, h / 2])

    def to_image_all(self, xy: np.ndarray) -> np.ndarray:
        """World (T, K, 2) -> image, frame by frame."""
        w, h = self.size
        c = np.stack([self.cx, self.cy], -1)[:, None, :]
        return (xy - c) * self.zoom[:, None, None] + np.array([w / 2, h / 2])

    def canvas_matrix(self, t: int) -> np.ndarray:
        """(2, 3) affine from background-canvas pixels to image pixels at frame t."""
        w, h = self.size
        z, m = self.zoom[t], self.margin
        return np.array([[z, 0, w / 2 - z * (self.cx[t] + m)], [0, z, h / 2 - z * (self.cy[t] + m)]])

    def always_visible(self) -> tuple[float, float]:
        """World x range inside the image in every frame."""
        w = self.size[0]
        return float(np.max(self.cx - w / 2 / self.zoom)), float(np.min(self.cx + w / 2 / self.zoom))


def make_camera(rng: np.random.Generator, n_frames: int, size: tuple[int, int], fps: float) -> Camera:
    """Still (30 %) or slowly panning, tilting and zooming (smooth sines)."""
    w, h = size
    t = np.arange(n_frames) / fps
    still = rng.random() < 0.3
    pan = 0.0 if still else rng.uniform(0.01, 0.06) * w
    tilt = 0.0 if still else rng.uniform(0.0, 0.015) * h
    zoom = 0.0 if still else rng.uniform(0.0, 0.12)
    ph = rng.uniform(0, 2 * np.pi, 3)
    periods = rng.uniform(4.0, 10.0, 3)
    cx = w / 2 + pan * np.sin(2 * np.pi * t / periods[0] + ph[0])
    cy = h / 2 + tilt * np.sin(2 * np.pi * t / periods[1] + ph[1])
    z = 1.0 + zoom * (1 - np.cos(2 * np.pi * t / periods[2] + ph[2])) / 2
    margin = int(np.ceil(0.08 * max(w, h))) + 8
    return Camera(cx, cy, z, size, margin)


def make_background(rng: np.random.Generator, size: tuple[int, int], margin: int) -> np.ndarray:
    """A (h + 2 margin, w + 2 margin, 3) uint8 backdrop: wall/sky over floor, low-frequency noise,
    a pattern (stripes, tiles, windows or blobs) and fine grain."""
    w, h = size[0] + 2 * margin, size[1] + 2 * margin
    horizon = int(rng.uniform(0.35, 0.6) * h)
    # Muted colours (mixed towards grey): real scenes are rarely all primaries.
    top, bottom = (_muted(rng) for _ in range(2))
    ramp_t = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    ramp_b = np.linspace(0, 1, h - horizon, dtype=np.float32)[:, None, None]
    img = np.empty((h, w, 3), np.float32)
    img[:horizon] = top[0] * (1 - ramp_t) + top[1] * ramp_t
    img[horizon:] = bottom[0] * (1 - ramp_b) + bottom[1] * ramp_b
    low = rng.normal(0, rng.uniform(10, 35), (rng.integers(3, 9), rng.integers(4, 14), 3)).astype(np.float32)
    img += cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 3)):
        _pattern(rng, img, horizon)
    grain = rng.normal(0, rng.uniform(2, 7), (h // 2 + 1, w // 2 + 1, 1)).astype(np.float32)
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    return np.clip(img + grain, 0, 255).astype(np.uint8)


def _muted(rng: np.random.Generator) -> np.ndarray:
    """Two colours for a gradient, each mixed 10-65 % towards its grey."""
    c = np.array([random_colour(rng), random_colour(rng)], np.float32)
    return c.mean(1, keepdims=True) + (c - c.mean(1, keepdims=True)) * rng.uniform(0.35, 0.9, (2, 1))


def _pattern(rng: np.random.Generator, img: np.ndarray, horizon: int) -> None:
    h, w = img.shape[:2]
    kind = rng.choice(4)
    col = random_colour(rng)
    if kind == 0:  # floor tiles / planks: lines converging to a vanishing point, and cross lines
        vx = rng.uniform(0.2, 0.8) * w
        for x in np.linspace(-w, 2 * w, rng.integers(8, 25)):
            cv2.line(img, (int(vx), horizon), (int(x), h), col, 1, cv2.LINE_AA)
        for k in range(1, 10):
            y = int(horizon + (h - horizon) * (k / 10) ** 1.6)
            cv2.line(img, (0, y), (w, y), col, 1, cv2.LINE_AA)
    elif kind == 1:  # wall stripes
        step = int(rng.uniform(0.02, 0.1) * w)
        thick = max(1, int(step * rng.uniform(0.1, 0.5)))
        for x in range(0, w, step):
            cv2.line(img, (x, 0), (x, horizon), col, thick, cv2.LINE_AA)
    elif kind == 2:  # buildings with windows
        x = 0
        while x < w:
            bw, bh = int(rng.uniform(0.08, 0.25) * w), int(rng.uniform(0.3, 0.95) * horizon)
            c = random_colour(rng)
            cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), c, -1)
            win = darker(c, rng.uniform(0.4, 1.3)) if rng.random() < 0.5 else random_colour(rng)
            ws = max(int(bw / rng.integers(3, 7)), 4)
            for wy in range(horizon - bh + ws // 2, horizon - ws, ws):
                for wx in range(x + ws // 3, x + bw - ws // 2, ws):
                    cv2.rectangle(img, (wx, wy), (wx + ws // 2, wy + ws // 2), win, -1)
            x += bw + int(rng.uniform(0, 0.05) * w)
    else:  # blobs (trees, bushes, posters)
        for _ in range(rng.integers(5, 20)):
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            ax = (int(rng.uniform(0.01, 0.08) * w), int(rng.uniform(0.01, 0.08) * w))
            cv2.ellipse(img, c, ax, rng.uniform(0, 180), 0, 360, random_colour(rng), -1, cv2.LINE_AA)


@dataclass
class SceneObject:
    """A rigid object moving in world pixels: ``kind`` (ball, box, triangle, disc, pole, crate,
    board, bush, panel), centre x (T,) and bottom y (T,), width and height, colour, depth (the
    people's draw order scale: objects with a larger depth are drawn over people with a smaller
    one), its own random shape details (``seed``) and, for an object that is there only in some
    frames (a transient event's), ``present`` (T,) bool."""

    kind: str
    x: np.ndarray
    y: np.ndarray
    width: float
    height: float
    colour: tuple[int, int, int]
    depth: float
    seed: int = 0
    present: np.ndarray | None = None


def make_distractors(
    rng: np.random.Generator, n_frames: int, size: tuple[int, int], margin: int
) -> list[SceneObject]:
    """0-5 small objects flying, rolling or sliding through the background."""
    w, h = size
    out = []
    for _ in range(rng.integers(0, 6)):
        kind = str(rng.choice(["ball", "box", "triangle", "disc"]))
        s = rng.uniform(0.03, 0.1) * h
        v = rng.normal(0, 0.006 * w, 2)
        x0, y0 = rng.uniform(-margin, w + margin), rng.uniform(0.1 * h, 0.95 * h)
        t = np.arange(n_frames)
        bounce = np.abs(np.sin(t * rng.uniform(0.05, 0.2))) * rng.uniform(0, 0.1) * h
        x = (x0 + v[0] * t + margin) % (w + 2 * margin) - margin  # wrap around the canvas
        y = y0 + v[1] * t * 0.3 - bounce
        out.append(SceneObject(kind, x, y, s, s, random_colour(rng), -1.0, int(rng.integers(1 << 30))))
    return out


def draw_object(canvas: Canvas, obj: SceneObject, camera: Camera, t: int) -> None:
    """Draw an object at frame t (owner value: whatever the canvas holds)."""
    if obj.present is not None and not obj.present[t]:
        return
    z = camera.zoom[t]
    base = camera.to_image(np.array([obj.x[t], obj.y[t]]), t)
    w, h = obj.width * z, obj.height * z
    col, dark = obj.colour, darker(obj.colour)
    r = np.random.default_rng(obj.seed)  # fixed details of this object, the same every frame
    if obj.kind == "ball":
        canvas.circle(base - [0, h / 2], w / 2, col)
        canvas.circle(base - [w * 0.15, h * 0.65], w * 0.12, (235, 235, 235))
    elif obj.kind in ("box", "crate", "panel", "pole"):
        quad = base + np.array([[-w / 2, 0], [w / 2, 0], [w / 2, -h], [-w / 2, -h]])
        canvas.poly(quad, col)
        if obj.kind != "pole":  # slats: visible texture
            n, slat = int(r.integers(2, 6)), max(h * 0.04, 1.0)
            for k in range(1, n):
                y = -h * k / n
                canvas.poly(
                    base + np.array([[-w / 2, y], [w / 2, y], [w / 2, y - slat], [-w / 2, y - slat]]), dark
                )
    elif obj.kind == "triangle":
        canvas.poly(base + np.array([[-w / 2, 0], [w / 2, 0], [0, -h]]), col)
    elif obj.kind == "disc":
        canvas.ellipse(base - [0, h / 2], (w / 2, h / 5), float(r.uniform(-30, 30)), col)
    elif obj.kind == "board":  # a sign on a post
        canvas.poly(base + np.array([[-w * 0.04, 0], [w * 0.04, 0], [w * 0.04, -h], [-w * 0.04, -h]]), dark)
        canvas.poly(
            base + np.array([[-w / 2, -h * 0.45], [w / 2, -h * 0.45], [w / 2, -h], [-w / 2, -h]]), col
        )
    elif obj.kind == "bush":
        for _ in range(7):
            c = base + [r.uniform(-0.35, 0.35) * w, -r.uniform(0.25, 0.7) * h]
            canvas.circle(c, r.uniform(0.22, 0.35) * min(w, 1.4 * h), darker(col, r.uniform(0.7, 1.1)))
