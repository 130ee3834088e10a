"""Token-map pictures (cmpose.viz.tokens)."""

from __future__ import annotations

import numpy as np
import pytest

from cmpose.viz.tokens import cluster_color, draw_token_maps, token_map_sheet

H, W, HP, WP = 64, 48, 4, 3  # 16 x 16 px token cells


def crop(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (H, W, 3), dtype=np.uint8)


def test_panels_shapes_and_content() -> None:
    img = crop()
    imp = np.arange(HP * WP, dtype=float).reshape(HP, WP)
    ids = np.full((HP, WP), -1)
    ids[0, 0], ids[3, 2] = 0, 1
    out = draw_token_maps(img, imp, ids, keypoints=np.full((17, 2), 20.0))
    assert out.shape == (H, 3 * W, 3) and out.dtype == np.uint8
    first, heat, clusters = out[:, :W], out[:, W : 2 * W], out[:, 2 * W :]
    assert (first != img).any()  # keypoints drawn
    assert heat.shape == (H, W, 3)
    grey = draw_token_maps(np.full((H, W, 3), 128, np.uint8), imp)[:, W:].astype(int)
    # inferno: the most important cell (bottom right) is bright, the least (top left) dark
    assert grey[50:60, 36:46].sum(-1).min() > grey[2:14, 2:14].sum(-1).max() + 100
    # a kept cell: the crop inside, a white outline; a clustered cell: its cluster's colour mixed in
    np.testing.assert_array_equal(clusters[20:28, 20:28], img[20:28, 20:28])
    assert (clusters[16, 16:32] == 255).all()
    assert not np.array_equal(clusters[2:14, 2:14], img[2:14, 2:14])
    assert draw_token_maps(img, imp).shape == (H, 2 * W, 3)  # no clusters: two panels


def test_constant_importance_and_bad_shapes() -> None:
    assert draw_token_maps(crop(), np.ones((HP, WP))).shape == (H, 2 * W, 3)
    with pytest.raises(ValueError):
        draw_token_maps(crop(), np.ones((HP, WP)), np.ones((2, 2)))
    with pytest.raises(ValueError):
        draw_token_maps(crop().astype(np.float32), np.ones((HP, WP)))


def test_sheet() -> None:
    T = 3
    crops = np.stack([crop(t) for t in range(T)])
    imp = np.random.default_rng(0).random((T, HP, WP))
    ids = np.random.default_rng(1).integers(-1, 4, (T, HP, WP))
    sheet = token_map_sheet(crops, imp, ids, keypoints=np.full((17, 2), 10.0))
    assert sheet.shape[1] == T * W and sheet.shape[0] > 3 * H and sheet.dtype == np.uint8
    assert token_map_sheet(crops, imp).shape[0] == sheet.shape[0] - H
    with pytest.raises(ValueError):
        token_map_sheet(crops, imp[:2])


def test_cluster_colours_differ() -> None:
    colours = {cluster_color(i) for i in range(20)}
    assert len(colours) == 20
