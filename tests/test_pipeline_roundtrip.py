"""Data pipeline -> heatmaps -> image coordinates -> prediction files -> mAP, on the real sample.

Decoding the loader's own target heatmaps is a perfect model: written back through the writer,
its predictions must score 100 mAP, which checks crops, the codec, the inverse mapping, the
frame keys and the writer together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.readers import read_annotations
from cmpose.eval.posetrack import evaluate
from cmpose.eval.writer import PersonPrediction, write_prediction_dir


def test_decoded_targets_score_100(pt18_sample: Path, tmp_path: Path) -> None:
    gt_dir = pt18_sample / "annotations" / "val"
    data = read_annotations(gt_dir)
    ds = PoseTrackClipDataset(data.people, data.videos, train=False)
    results: dict[str, dict[int, list[PersonPrediction]]] = {}
    for i, person in enumerate(ds.samples):
        item = ds[i]
        crop_xy, scores = ds.codec.decode(item["target"].numpy())
        m = item["meta"]["crop_to_image"].numpy()
        xy = crop_xy @ m[:, :2].T + m[:, 2]
        xy[item["target_weight"].numpy() == 0] = np.nan  # not predicted
        # Distinct scores (ties would make the AP depend on the tie order).
        scores = scores - 1e-6 * (np.arange(17) + 17 * i)
        frame = results.setdefault(person.video_id, {}).setdefault(person.frame_index, [])
        frame.append(PersonPrediction(xy, scores))
    write_prediction_dir(gt_dir, results, tmp_path)
    report = evaluate(gt_dir, tmp_path)
    assert report["Total"] == 100.0
    assert all(j["ap"] == 100.0 and j["recall"] == 100.0 for j in report["joints"].values())
