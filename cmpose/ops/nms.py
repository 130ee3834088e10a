"""Pose-level post-processing for detector-box testing (pure numpy): COCO OKS, OKS-NMS and
HRNet's instance rescoring. DCPose/HRNet on PoseTrack: rescore with joint threshold 0.2, then
OKS-NMS with threshold 0.9.

Shapes: P poses, J joints; poses are (x, y, score) per joint in image pixels.
"""

from __future__ import annotations

import numpy as np

from cmpose.keypoints import PT18_NAMES

# Per-joint OKS sigmas in PoseTrack18's joint order. Joints that exist in COCO keep COCO's
# sigmas (cocoapi). head_bottom and head_top sit in COCO's eye slots and keep the eyes' 0.025,
# as mmpose's posetrack18 dataset config and HRNet/DCPose's ``oks_nms`` (COCO's 17 sigmas used
# by position) do; these values are a convention, not a measured spread of those joints.
_SIGMA_BY_NAME: dict[str, float] = {
    "nose": 0.026,
    "head_bottom": 0.025,
    "head_top": 0.025,
    "left_ear": 0.035,
    "right_ear": 0.035,
    "left_shoulder": 0.079,
    "right_shoulder": 0.079,
    "left_elbow": 0.072,
    "right_elbow": 0.072,
    "left_wrist": 0.062,
    "right_wrist": 0.062,
    "left_hip": 0.107,
    "right_hip": 0.107,
    "left_knee": 0.087,
    "right_knee": 0.087,
    "left_ankle": 0.089,
    "right_ankle": 0.089,
}
POSETRACK_SIGMAS: np.ndarray = np.array([_SIGMA_BY_NAME[n] for n in PT18_NAMES], dtype=np.float64)  # (J,)
POSETRACK_SIGMAS.flags.writeable = False


def oks(
    kpts_a: np.ndarray,
    kpts_b: np.ndarray,
    area_a: float,
    areas_b: np.ndarray,
    sigmas: np.ndarray,
    vis_thr: float | None = None,
) -> np.ndarray:
    """Object keypoint similarity of one pose against P others (cocoapi's formula).

    ``e_j = d_j^2 / (2 sigma_j)^2 / ((area_a + area_b) / 2 + eps) / 2`` and OKS is the mean of
    ``exp(-e_j)`` over the joints; the mean area stands in for the GT area, as HRNet's
    ``oks_iou`` does when comparing two predictions.

    Args:
        kpts_a: (J, 3) the reference pose (x, y, score).
        kpts_b: (P, J, 3) the other poses.
        area_a: area of the reference pose's box in pixels^2 (HRNet: the enlarged crop box).
        areas_b: (P,) areas of the other boxes.
        sigmas: (J,) per-joint sigmas (e.g. ``POSETRACK_SIGMAS``).
        vis_thr: if given, average only over the joints whose score in ``kpts_a`` is above it
            (HRNet's ``in_vis_thre``; its code ends up masking by the other pose's scores, we mask
            by the reference pose's); a pose with no such joint gets OKS 0.

    Returns:
        (P,) OKS in [0, 1].
    """
    kpts_a = np.asarray(kpts_a, dtype=np.float64)
    kpts_b = np.asarray(kpts_b, dtype=np.float64)
    areas_b = np.asarray(areas_b, dtype=np.float64).reshape(-1)  # (P,)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if kpts_a.ndim != 2 or kpts_a.shape[1] != 3 or sigmas.shape != kpts_a.shape[:1]:
        raise ValueError(f"expected kpts_a (J, 3) and sigmas (J,), got {kpts_a.shape} and {sigmas.shape}")
    if kpts_b.shape[1:] != kpts_a.shape or kpts_b.shape[0] != areas_b.shape[0]:
        raise ValueError(
            f"expected kpts_b (P, {kpts_a.shape[0]}, 3) and areas_b (P,), "
            f"got {kpts_b.shape} and {areas_b.shape}"
        )
    variances = (2.0 * sigmas) ** 2  # (J,)
    d2 = ((kpts_b[..., :2] - kpts_a[None, :, :2]) ** 2).sum(-1)  # (P, J)
    e = d2 / variances / ((area_a + areas_b[:, None]) / 2.0 + np.spacing(1)) / 2.0  # (P, J)
    sim = np.exp(-e)  # (P, J)
    if vis_thr is None:
        return sim.mean(-1)
    used = kpts_a[:, 2] > vis_thr  # (J,)
    if not used.any():
        return np.zeros(kpts_b.shape[0])
    return sim[:, used].mean(-1)


def oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.9,
    sigmas: np.ndarray | None = None,
    vis_thr: float | None = None,
) -> list[int]:
    """Greedy OKS non-maximum suppression (HRNet/DCPose ``oks_nms``).

    Take the best-scored remaining pose, drop every remaining pose whose OKS with it is above
    ``thr``, repeat. Equal scores keep their input order (a stable sort; HRNet's
    ``argsort()[::-1]`` prefers the later one).

    Args:
        kpts: (P, J, 3) poses.
        scores: (P,) pose scores (after ``rescore``).
        areas: (P,) box areas in pixels^2.
        thr: OKS above which a pose is a duplicate (HRNet/DCPose: 0.9).
        sigmas: (J,) per-joint sigmas; None = ``POSETRACK_SIGMAS``.
        vis_thr: see ``oks``.

    Returns:
        Indices of the kept poses, best score first.
    """
    kpts = np.asarray(kpts, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        return []
    if kpts.ndim != 3 or not len(kpts) == len(scores) == len(areas):
        raise ValueError(
            f"expected kpts (P, J, 3), scores (P,), areas (P,): {kpts.shape}, {scores.shape}, {areas.shape}"
        )
    sigmas = POSETRACK_SIGMAS if sigmas is None else sigmas
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        overlap = oks(kpts[i], kpts[rest], float(areas[i]), areas[rest], sigmas, vis_thr)  # (len(rest),)
        order = rest[overlap <= thr]
    return keep


def rescore(box_scores: np.ndarray, joint_scores: np.ndarray, thr: float = 0.2) -> np.ndarray:
    """HRNet's instance score: box score x the mean of the joint scores above ``thr``.

    Args:
        box_scores: (P,) detector scores.
        joint_scores: (P, J) per-joint confidences (heatmap maxima).
        thr: joint threshold (HRNet/DCPose ``IN_VIS_THRE`` 0.2).

    Returns:
        (P,) scores; a pose with no joint above ``thr`` scores 0.
    """
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    joint_scores = np.asarray(joint_scores, dtype=np.float64).reshape(len(box_scores), -1)  # (P, J)
    above = joint_scores > thr  # (P, J)
    count = above.sum(-1)  # (P,)
    mean = np.where(above, joint_scores, 0.0).sum(-1) / np.maximum(count, 1)  # 0 when count == 0
    return box_scores * mean
