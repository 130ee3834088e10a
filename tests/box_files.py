"""Detection files made from the GT, shared by the box-ceiling and gap-filling tests."""

from __future__ import annotations

import json
from pathlib import Path


def gt_boxes(val: Path, score: float = 0.9) -> list[dict]:
    """The GT box of every annotated person in the per-video files under ``val``, as a
    detection (COCO results format) of ``score``."""
    out = []
    for f in sorted(val.glob("*.json")):
        for a in json.loads(f.read_text())["annotations"]:
            if any(v > 0 for v in a["keypoints"][2::3]):
                out.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": score})
    return out
