"""Contact sheets for ``cmpose data show``: a video's labelled frames, or one loader sample."""

from __future__ import annotations

import numpy as np

from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.frames import decode_image
from cmpose.data.records import Dataset
from cmpose.keypoints import FLIP_INDEX
from cmpose.viz.draw import (
    contact_sheet,
    denormalize,
    draw_box,
    draw_pose,
    heatmap_overlay,
    shade_regions,
    track_color,
)


def video_sheet(data: Dataset, video_id: str, max_frames: int = 12) -> np.ndarray:
    """Up to ``max_frames`` labelled frames of a video (evenly spaced) with GT skeletons, person
    and head boxes, track ids, and ignore regions shaded red."""
    frames = sorted(f for v, f in data.labelled_frames if v == video_id)
    if len(frames) > max_frames:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    people = [p for p in data.people if p.video_id == video_id]
    tiles, labels = [], []
    for f in frames:
        img = decode_image(data.labelled_frames[(video_id, f)]).copy()
        _, _, regions = data.frame_info[(video_id, f)]
        shade_regions(img, regions)
        thick = max(2, img.shape[1] // 500)
        for p in (p for p in people if p.frame_index == f):
            color = track_color(max(p.track_id, 0))
            draw_box(img, p.box, color, f"id {p.track_id}")
            if p.head_box is not None:
                draw_box(img, p.head_box, color)
            draw_pose(img, p.keypoints, color, thick)
        n = sum(p.frame_index == f for p in people)
        tiles.append(img)
        labels.append(f"{video_id} frame {f}: {n} people")
    # Few frames: keep them large enough to see the joints of small people.
    return contact_sheet(
        tiles, labels, columns=min(4, len(tiles)), tile_width=1280 if len(tiles) == 1 else 640
    )


def clip_sheet(ds: PoseTrackClipDataset, index: int) -> np.ndarray:
    """One sample as the model sees it: the T crops with the keyframe's GT joints, then the
    keyframe with its target heatmaps overlaid."""
    sample = ds[index]
    clip = sample["clip"].numpy()  # (T, 3, H, W)
    meta = sample["meta"]
    person = ds.samples[index]
    # GT joints in crop pixels, through the same (possibly flipped) mapping the target used.
    to_img = meta["crop_to_image"].numpy()
    to_crop = np.linalg.inv(np.vstack([to_img, [0, 0, 1]]))[:2]
    kps = person.keypoints.copy()
    kps[:, :2] = kps[:, :2] @ to_crop[:, :2].T + to_crop[:, 2]
    if bool(meta["flipped"]):
        kps[:, 0] = ds.crop.image_size[0] - 1 - kps[:, 0]
        kps = kps[list(FLIP_INDEX)]
    key = clip.shape[0] // 2
    tiles, labels = [], []
    for t, frame_index in enumerate(meta["frame_indices"].tolist()):
        img = denormalize(clip[t], ds.crop.mean, ds.crop.std)
        if t == key:
            draw_pose(img, kps, (0, 255, 0), 1)
        tiles.append(img)
        labels.append(f"t={t} frame {frame_index}" + (" (key)" if t == key else ""))
    key_img = denormalize(clip[key], ds.crop.mean, ds.crop.std)
    tiles.append(heatmap_overlay(key_img, sample["target"].numpy()))
    labels.append(f"targets ({int(sample['target_weight'].sum())} joints)")
    return contact_sheet(tiles, labels, columns=len(tiles), tile_width=ds.crop.image_size[0] * 2)
