"""Point-in-polygon test for PoseTrack ignore regions.

poseval asks shapely's ``Polygon.contains(Point)`` (eval_helpers.removeIgnoredPointsRects): a point
counts as inside only when it lies strictly in the interior, so a point on an edge or a vertex is
outside. GEOS decides this with a ray-crossing count along +x (``RayCrossingCounter``) that flags the
boundary first; this module reproduces those rules with numpy, over all points and edges at once.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# Below this relative size the float orientation determinant may have the wrong sign; such entries
# are recomputed exactly with fractions (GEOS uses exact double-double arithmetic for the same test).
_UNSURE_REL = 1e-10


def _orientation(x1, y1, x2, y2, px, py) -> np.ndarray:
    """Sign (-1, 0, 1) of the cross product (p2 - p1) x (p - p1), exact for any float input."""
    a = (x2 - x1) * (py - y1)
    b = (y2 - y1) * (px - x1)
    det = a - b
    sign = np.sign(det)
    unsure = np.abs(det) <= _UNSURE_REL * (np.abs(a) + np.abs(b))
    for k in np.flatnonzero(unsure):
        fx1, fy1, fx2, fy2, fpx, fpy = (Fraction(float(v[k])) for v in (x1, y1, x2, y2, px, py))
        exact = (fx2 - fx1) * (fpy - fy1) - (fy2 - fy1) * (fpx - fx1)
        sign[k] = (exact > 0) - (exact < 0)
    return sign


def _ring_edges(polygons: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (E, 2) start and end points of the closed rings, and the polygon id of each edge."""
    starts, ends, owner = [], [], []
    for k, poly in enumerate(polygons):
        if len(poly) < 3:
            # No interior, so nothing is inside (shapely refuses 1 or 2 vertices: see docs/evaluation.md).
            continue
        ring = poly if np.array_equal(poly[0], poly[-1]) else np.vstack([poly, poly[:1]])
        starts.append(ring[:-1])
        ends.append(ring[1:])
        owner.append(np.full(len(ring) - 1, k))
    if not starts:
        empty = np.zeros((0, 2))
        return empty, empty, np.zeros(0, dtype=np.int64)
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(owner)


def points_in_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Which points lie strictly inside at least one polygon.

    Args:
        points: (N, 2) x, y.
        polygons: list of (V, 2) vertex arrays, rings closed implicitly (as shapely does).

    Returns:
        (N,) bool.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    n = len(points)
    p1, p2, owner = _ring_edges(polygons)
    if n == 0 or len(owner) == 0:
        return np.zeros(n, dtype=bool)
    px, py = points[:, 0:1], points[:, 1:2]  # (N, 1) against (E,) edges
    x1, y1, x2, y2 = p1[:, 0], p1[:, 1], p2[:, 0], p2[:, 1]
    # GEOS skips segments entirely left of the point before any other test.
    active = ~((x1 < px) & (x2 < px))
    at_end = (x2 == px) & (y2 == py)
    horizontal = (y1 == py) & (y2 == py)
    on_horizontal = horizontal & (np.minimum(x1, x2) <= px) & (px <= np.maximum(x1, x2))
    straddle = ((y1 > py) & (y2 <= py)) | ((y2 > py) & (y1 <= py))
    test = active & straddle & ~at_end
    ip, ie = np.nonzero(test)
    orient = _orientation(x1[ie], y1[ie], x2[ie], y2[ie], points[ip, 0], points[ip, 1])
    on_edge = np.zeros_like(test)
    on_edge[ip, ie] = orient == 0
    # Orientation is taken for the upward direction of the edge; a left turn means the +x ray crosses.
    upward = np.where(y2[ie] < y1[ie], -orient, orient)
    crosses = np.zeros_like(test)
    crosses[ip, ie] = upward > 0
    boundary = active & (at_end | on_horizontal | on_edge)
    # Per polygon: crossings and boundary hits, summed over that polygon's contiguous edges.
    first = np.searchsorted(owner, np.unique(owner))
    cross_count = np.add.reduceat(crosses.astype(np.int64), first, axis=1)
    on_boundary = np.add.reduceat(boundary.astype(np.int64), first, axis=1) > 0
    inside = (cross_count % 2 == 1) & ~on_boundary
    return inside.any(axis=1)
