"""Ignore-region test: strictly inside counts, the border (edges and vertices) does not."""

from __future__ import annotations

import numpy as np

from cmpose.eval.regions import points_in_polygons

SQUARE = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])


def test_square():
    pts = [
        [5, 5],
        [0, 5],
        [10, 5],
        [5, 0],
        [5, 10],
        [0, 0],
        [10, 10],
        [-1, 5],
        [11, 5],
        [5, 11],
        [0.001, 9.999],
    ]
    assert points_in_polygons(np.array(pts), [SQUARE]).tolist() == [
        True,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        True,
    ]


def test_diagonal_edge_and_closed_ring():
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 0.0]])  # already closed
    pts = np.array([[1.0, 1.0], [2.0, 2.0], [2.0, 2.0 + 1e-12], [2.0, 2.0 - 1e-12], [0.1, 3.8]])
    assert points_in_polygons(pts, [triangle]).tolist() == [True, False, False, True, True]


def test_several_polygons_and_degenerate_ones():
    other = SQUARE + 5  # overlaps the first: (5, 7) is on its border but inside SQUARE
    line = np.array([[0.0, 0.0], [20.0, 20.0]])
    pts = np.array([[5.0, 7.0], [12.0, 12.0], [15.0, 15.0], [-5.0, -5.0]])
    assert points_in_polygons(pts, [SQUARE, other, line, np.zeros((0, 2))]).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_self_intersecting_polygon_uses_even_odd():
    bowtie = np.array([[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]])
    pts = np.array([[8.0, 5.0], [2.0, 5.0], [5.0, 2.0], [5.0, 5.0]])
    assert points_in_polygons(pts, [bowtie]).tolist() == [True, True, False, False]


def test_no_points_or_polygons():
    assert points_in_polygons(np.zeros((0, 2)), [SQUARE]).shape == (0,)
    assert not points_in_polygons(np.array([[5.0, 5.0]]), []).any()
