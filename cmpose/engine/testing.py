"""Testing a model on a split: inference with flip test, person rescoring and OKS-NMS,
per-video PoseTrack files through the prediction writer, then the PoseTrack mAP (all labelled
frames, and hard frames only when the annotations carry hard-case labels).

In DDP every rank predicts its share of the samples; the people are gathered on rank 0,
which writes and evaluates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from cmpose.data.build import build_clip_dataset, worker_context, worker_init
from cmpose.data.config import ClipConfig
from cmpose.data.dataset import CropCorruption
from cmpose.engine import dist
from cmpose.engine.config import DataConfig, TestConfig
from cmpose.engine.predict import decode_to_image, predict_clips
from cmpose.eval.joint_classes import class_markdown, clip_window, evaluate_by_class
from cmpose.eval.posetrack import evaluate, format_table
from cmpose.eval.subsets import write_frame_subset
from cmpose.eval.writer import PersonPrediction, write_prediction_dir
from cmpose.ops.nms import oks_nms, rescore
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)


def load_trained_model(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Any]:
    """``load_model`` for ``cmpose test`` / ``cmpose infer``: a checkpoint whose config does not
    build the model its weights were trained as (an edited config, a wrong stage) is a
    ``CheckpointError`` naming the file, not torch's size-mismatch traceback."""
    from cmpose.checkpoint import CheckpointError
    from cmpose.engine.checkpointing import load_model
    from cmpose.errors import CmposeError

    try:
        return load_model(Path(path), device)
    except CmposeError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(
            f"{path}: its config does not build the model its weights were trained as ({type(err).__name__}: "
            f"{detail[:400]})"
        ) from None


def resolve_path(root: str, path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def split_paths(data: DataConfig, split: str) -> tuple[Path, Path | None]:
    """(annotation path, detections path or None) of ``split`` ("train" / "val")."""
    ann = resolve_path(data.root, getattr(data, split))
    dets = resolve_path(data.root, data.val_detections) if split == "val" else None
    return ann, dets


@torch.no_grad()
def predict_people(
    model: Any, dataset: Any, test: TestConfig, device: torch.device, amp_dtype: torch.dtype | None
) -> list[dict[str, Any]]:
    """Run the model over this rank's share of ``dataset``; one dict per person (image pixels)."""
    indices = list(range(dist.rank(), len(dataset), dist.world_size()))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=test.batch_size,
        num_workers=test.workers,
        worker_init_fn=worker_init if test.workers else None,
        multiprocessing_context=worker_context() if test.workers else None,
    )
    model.eval()
    people = []
    for batch in tqdm(loader, desc="test", disable=not dist.is_main(), leave=False):
        clips = batch["clip"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            heatmaps, _ = predict_clips(model, clips, test.flip_test)
        xy, scores = decode_to_image(dataset.codec, heatmaps, batch["meta"]["crop_to_image"].numpy())
        for b, idx in enumerate(batch["meta"]["index"].tolist()):
            rec = dataset.samples[idx]
            people.append(
                {
                    "video": rec.video_id,
                    "frame": rec.frame_index,
                    "keypoints": xy[b],
                    "scores": scores[b],
                    "box": np.asarray(rec.box, np.float64),
                    "box_score": float(rec.box_score),
                }
            )
    return people


def people_to_results(
    people: list[dict[str, Any]], test: TestConfig
) -> dict[str, dict[int, list[PersonPrediction]]]:
    """Rescore each person (box score x mean confident joint score, HRNet), apply OKS-NMS per
    frame (DCPose/HRNet threshold 0.9) and, if ``test.joint_scores`` says so, scale each joint's
    score by its person's; keyed as the writer wants (video -> frame -> people)."""
    by_frame: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for p in people:
        by_frame[(p["video"], p["frame"])].append(p)
    results: dict[str, dict[int, list[PersonPrediction]]] = defaultdict(dict)
    for (video, frame), group in sorted(by_frame.items()):
        kps = np.stack([p["keypoints"] for p in group])  # (P, J, 2)
        sc = np.stack([p["scores"] for p in group])  # (P, J)
        score = rescore(np.array([p["box_score"] for p in group]), sc, test.rescore_threshold)
        keep = list(range(len(group)))
        if test.oks_nms > 0 and len(group) > 1:
            areas = np.array([p["box"][2] * p["box"][3] for p in group])
            keep = oks_nms(np.concatenate([kps, sc[..., None]], -1), score, areas, test.oks_nms)
        if test.joint_scores == "heatmap_x_person":
            sc = sc * score[:, None]  # (P, J): rank joints by both localisation and existence
        results[video][frame] = [
            PersonPrediction(kps[i], sc[i], score=float(score[i]), box=group[i]["box"]) for i in keep
        ]
    return dict(results)


def run_test(
    model: Any,
    data: DataConfig,
    clip: ClipConfig,
    test: TestConfig,
    out_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    split: str = "val",
    corrupt: CropCorruption | None = None,
) -> dict[str, Any] | None:
    """Test ``model`` on ``split``; returns (on rank 0) {"all": report, "hard": report or None}
    and writes predictions/, report.json and report.md under ``out_dir``. ``corrupt`` (``cmpose
    robustness``) corrupts every sample's crops; None tests the clean frames."""
    ann, dets = split_paths(data, split)
    use_dets = test.boxes == "detections" and dets is not None
    if test.boxes == "detections" and dets is None:
        log.warning("test.boxes is 'detections' but data.val_detections is not set: using GT boxes")
    dataset = build_clip_dataset(
        ann,
        train=False,
        clip=clip,
        crop=data.crop,
        augment=data.augment,
        loader=dataclasses.replace(data.loader, min_keypoints=0),
        detections=dets if use_dets else None,
        gap_fill=test.gap_fill,
        image_root=resolve_path(data.root, data.image_root),
        pt17_layout=data.pt17_layout,
        corrupt=corrupt,
    )
    people = predict_people(model, dataset, test, device, amp_dtype)
    gathered = dist.gather_objects(people)
    if not dist.is_main():
        return None
    results = people_to_results([p for part in gathered for p in part], test)
    gt_dir = ann if ann.is_dir() else ann.parent
    pred_dir = Path(out_dir) / "predictions"
    write_prediction_dir(gt_dir, results, pred_dir)
    report = {"all": evaluate(gt_dir, pred_dir), "hard": None, "boxes": "detections" if use_dets else "gt"}
    if use_dets:
        report["gap_fill"] = test.gap_fill.max_gap
    hard_gt = Path(out_dir) / "gt_hard"
    if write_frame_subset(gt_dir, hard_gt, lambda ann: bool(ann.get("hard"))):
        report["hard"] = evaluate(hard_gt, pred_dir)
    # Per joint class (GT with visible_dt, cmpose synth --version 2); the window follows the clip.
    by_class = evaluate_by_class(gt_dir, pred_dir, clip_window(clip.num_frames, clip.test_step))
    if by_class is not None:
        report["joint_classes"] = by_class
    atomic_write_json(Path(out_dir) / "report.json", report)
    atomic_write_bytes(Path(out_dir) / "report.md", report_markdown(report).encode())
    return report


def report_markdown(report: dict[str, Any]) -> str:
    lines = [f"PoseTrack mAP ({boxes_label(report)}), all labelled frames:", "", "```"]
    lines += [format_table(report["all"]), "```"]
    if report.get("hard"):
        lines += [
            "",
            "Hard frames only (a person labelled occluded / blurred / dark / truncated):",
            "",
            "```",
        ]
        lines += [format_table(report["hard"]), "```"]
    lines += class_markdown(report.get("joint_classes"))
    return "\n".join(lines) + "\n"


def boxes_label(report: dict[str, Any]) -> str:
    """Which boxes a report's people come from, in words."""
    if report["boxes"] != "detections":
        return f"{report['boxes']} boxes"
    gap = report.get("gap_fill", 0)
    return f"detector boxes, gaps filled from frames up to {gap} away" if gap else "detector boxes"


def summary_line(report: dict[str, Any]) -> str:
    s = f"mAP {report['all']['Total']:.1f}"
    if report.get("hard"):
        s += f" (hard frames {report['hard']['Total']:.1f})"
    return s
