"""cmpose robustness: the dataset hook (keyframe / all frames, seeded per sample), the run over
corruptions and severities (clean numbers = run_test's), mPC / rPC, and the CLI end to end on a
tiny checkpoint (clean numbers = ``cmpose test``'s)."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.cli.main import main
from cmpose.config import from_dict, to_dict
from cmpose.data.build import build_clip_dataset
from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig
from cmpose.data.records import PersonRecord
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.checkpointing import save_checkpoint
from cmpose.engine.config import ExperimentConfig
from cmpose.engine.stages import build_stage_model
from cmpose.engine.testing import run_test
from cmpose.robustness.hook import ClipCorruption, gt_people_by_frame
from cmpose.robustness.report import mpc_rpc, robustness_markdown
from cmpose.robustness.run import FRAME_DROP_IDENTITY, run_robustness

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CROP = CropConfig(image_size=tuple(TINY_CROP["image_size"]), heatmap_size=tuple(TINY_CROP["heatmap_size"]))
TABLE = ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_posetrack(root, num_videos=2, num_frames=4, people=2, image_size=(160, 96), split="val")
    return root


def _dataset(root: Path, num_frames: int = 3, corrupt=None):
    return build_clip_dataset(
        root / "annotations" / "val",
        train=False,
        clip=ClipConfig(num_frames=num_frames),
        crop=CROP,
        augment=AugmentConfig(),
        loader=LoaderConfig(min_keypoints=0),
        corrupt=corrupt,
    )


def _config(root: Path, kind: str = "mcl") -> ExperimentConfig:
    return from_dict(
        ExperimentConfig,
        {
            "data": {"root": str(root), "val": "annotations/val", "workers": 0, "crop": TINY_CROP},
            "model": TINY_MODEL,
            "stages": [{"name": kind, "kind": kind}],
            "test": {"boxes": "gt", "workers": 0, "batch_size": 8, "flip_test": False},
        },
    )


def _model(cfg: ExperimentConfig):
    torch.manual_seed(0)
    return build_stage_model(cfg, cfg.stages[0]).eval()


# --- the hook in the dataset -------------------------------------------------------------------------


def test_no_corruption_and_identity_hook_give_todays_items(toy_root: Path) -> None:
    plain, hooked = _dataset(toy_root), _dataset(toy_root, corrupt=lambda crops, i, p, m: crops)
    for i in (0, 5, len(plain) - 1):
        a, b = plain[i], hooked[i]
        assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["target"], b["target"])


def test_key_corrupts_only_the_keyframe_all_every_frame(toy_root: Path) -> None:
    clean = _dataset(toy_root)[3]["clip"]
    key = _dataset(toy_root, corrupt=ClipCorruption("gaussian_noise", 3, "key"))[3]["clip"]
    every = _dataset(toy_root, corrupt=ClipCorruption("gaussian_noise", 3, "all"))[3]["clip"]
    assert torch.equal(key[0], clean[0]) and torch.equal(key[2], clean[2])
    assert not torch.equal(key[1], clean[1])
    assert all(not torch.equal(every[t], clean[t]) for t in range(3))
    assert torch.equal(every[1], key[1])  # the keyframe draws first: alike in both


def test_seeded_per_sample_whatever_the_order_or_process(toy_root: Path) -> None:
    corrupt = ClipCorruption("motion_blur", 4, "all", seed=3)
    ds = _dataset(toy_root, corrupt=corrupt)
    forward = [ds[i]["clip"] for i in range(len(ds))]
    backward = [ds[i]["clip"] for i in reversed(range(len(ds)))][::-1]
    copy = pickle.loads(pickle.dumps(ds))  # as a loader worker receives it
    for i in range(len(ds)):
        assert torch.equal(forward[i], backward[i]) and torch.equal(forward[i], copy[i]["clip"])
    other_seed = _dataset(toy_root, corrupt=ClipCorruption("motion_blur", 4, "all", seed=4))
    assert not torch.equal(other_seed[0]["clip"], forward[0])


def test_frame_drop_replaces_neighbours_and_ignores_frames(toy_root: Path) -> None:
    for frames in ("key", "all"):
        clip = _dataset(toy_root, corrupt=ClipCorruption("frame_drop", 5, frames))[5]["clip"]
        assert torch.equal(clip[0], clip[1]) and torch.equal(clip[2], clip[1])
    clean = _dataset(toy_root)[5]["clip"]
    assert not torch.equal(clean[0], clean[1])  # the toy frames move: the drop is visible
    single = _dataset(toy_root, 1, corrupt=ClipCorruption("frame_drop", 5))[5]["clip"]
    assert torch.equal(single, _dataset(toy_root, 1)[5]["clip"])  # T = 1: identity


def test_occlusion_of_a_detector_box_uses_the_matched_gt_person() -> None:
    kps = np.zeros((17, 3))
    kps[0] = (30.0, 20.0, 1)
    gt = PersonRecord("v", 2, Path("x.jpg"), None, np.array([10.0, 10.0, 40.0, 80.0]), kps)
    det = PersonRecord("v", 2, Path("x.jpg"), None, np.array([12.0, 10.0, 40.0, 78.0]), box_score=0.9)
    far = PersonRecord("v", 2, Path("x.jpg"), None, np.array([100.0, 10.0, 40.0, 80.0]), box_score=0.9)
    corrupt = ClipCorruption("occlusion", 1, gt_people=gt_people_by_frame([gt]))
    identity = np.eye(3)
    np.testing.assert_allclose(corrupt.crop_joints(det, identity, (96, 160)), [[30.0, 20.0]])
    assert corrupt.crop_joints(far, identity, (96, 160)).shape == (0, 2)
    assert corrupt.crop_joints(det, identity, (10, 10)).shape == (0, 2)  # outside the crop
    crops = np.full((3, 96, 160, 3), 128, np.uint8)
    out = corrupt(crops, 0, det, identity)
    assert (out[1, 20, 30] != 128).any()  # the joint is covered ...
    assert (out[0] != 128).any(-1).sum() == (out[1] != 128).any(-1).sum() > 0  # ... on every frame alike


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        ClipCorruption("fog", 1)
    with pytest.raises(ValueError, match="severity"):
        ClipCorruption("jpeg", 0)
    with pytest.raises(ValueError, match="frames"):
        ClipCorruption("jpeg", 1, "middle")


# --- mPC, rPC, the table ----------------------------------------------------------------------------


def test_mpc_rpc_arithmetic() -> None:
    results = {"a": {"1": {"Total": 10.0}, "2": {"Total": 20.0}}, "b": {"1": {"Total": 30.0}}}
    mpc, rpc = mpc_rpc(40.0, results)
    assert mpc == pytest.approx(20.0)  # mean over the three runs, not over the corruptions (22.5)
    assert rpc == pytest.approx(0.5)
    assert mpc_rpc(0.0, results)[1] is None
    with pytest.raises(ValueError):
        mpc_rpc(40.0, {})
    report = {"clean": {"Total": 40.0}, "results": results, "mPC": mpc, "rPC": rpc}
    md = robustness_markdown(report)
    assert "| a | 10.0 | 20.0 | 15.0 |" in md and "| b | 30.0 |  | 30.0 |" in md
    assert "mPC 20.0, rPC 0.500" in md


# --- the run ------------------------------------------------------------------------------------------


def test_run_robustness_clean_equals_run_test(toy_root: Path, tmp_path: Path) -> None:
    cfg = _config(toy_root)
    model = _model(cfg)
    clip = ClipConfig(num_frames=3)
    dev = torch.device("cpu")
    plain = run_test(model, cfg.data, clip, cfg.test, tmp_path / "test", dev)
    out = run_robustness(
        model,
        cfg.data,
        clip,
        cfg.test,
        tmp_path / "rob",
        dev,
        corruptions=["defocus", "frame_drop"],
        severities=[2, 5],
        frames="key",
        seed=1,
    )
    assert out["clean"] == {k: plain["all"][k] for k in TABLE}
    assert list(out["results"]) == ["defocus", "frame_drop"]
    assert all(list(by_sev) == ["2", "5"] for by_sev in out["results"].values())
    totals = [r["Total"] for by_sev in out["results"].values() for r in by_sev.values()]
    assert out["mPC"] == pytest.approx(np.mean(totals))
    assert out["rPC"] == pytest.approx(out["mPC"] / out["clean"]["Total"])
    assert out["settings"] == {"frames": "key", "seed": 1, "split": "val", "boxes": "gt", "num_frames": 3}
    assert out["notes"] == []
    assert json.loads((tmp_path / "rob" / "robustness.json").read_text()) == out
    for run in ("defocus_s2", "defocus_s5", "frame_drop_s2", "frame_drop_s5"):
        assert (tmp_path / "rob" / "runs" / run / "report.json").is_file()


def test_run_robustness_frame_drop_for_a_single_frame_model(toy_root: Path, tmp_path: Path) -> None:
    cfg = _config(toy_root, "single")
    model = _model(cfg)
    out = run_robustness(
        model,
        cfg.data,
        ClipConfig(num_frames=1),
        cfg.test,
        tmp_path,
        torch.device("cpu"),
        corruptions=["frame_drop"],
        severities=[1, 3],
    )
    assert out["results"]["frame_drop"] == {"1": out["clean"], "3": out["clean"]}
    assert out["notes"] == [FRAME_DROP_IDENTITY]
    assert not (tmp_path / "runs").exists()  # not rerun
    assert "identity" in (tmp_path / "robustness.md").read_text()


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_end_to_end(toy_root: Path, tmp_path: Path, capsys) -> None:
    cfg = _config(toy_root)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, {"model": _model(cfg).state_dict(), "config": to_dict(cfg), "stage": "mcl"})
    out = tmp_path / "rob"
    args = ["--checkpoint", str(ckpt), "--device", "cpu", "--boxes", "gt"]
    rc = main(
        [
            "robustness",
            *args,
            "--corruptions",
            "occlusion,low_light",
            "--severities",
            "1,5",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert "| occlusion |" in capsys.readouterr().out
    report = json.loads((out / "robustness.json").read_text())
    assert set(report) == {"clean", "results", "mPC", "rPC", "settings", "notes"}
    assert list(report["clean"]) == TABLE
    assert list(report["results"]) == ["occlusion", "low_light"]
    for by_sev in report["results"].values():
        assert list(by_sev) == ["1", "5"] and all(list(r) == TABLE for r in by_sev.values())
    totals = [r["Total"] for by_sev in report["results"].values() for r in by_sev.values()]
    assert report["mPC"] == pytest.approx(sum(totals) / 4)
    assert (out / "robustness.md").read_text().startswith("Corruption robustness")
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the clean numbers are cmpose test's on the same checkpoint and boxes
    assert main(["test", *args, "--out", str(tmp_path / "test")]) == 0
    tested = json.loads((tmp_path / "test" / "report.json").read_text())["all"]
    assert report["clean"] == {k: tested[k] for k in TABLE}


def test_cli_rejects_unknown_names(toy_root: Path, tmp_path: Path, caplog) -> None:
    args = ["robustness", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path)]
    assert main([*args, "--corruptions", "jpeg,fog"]) == 2
    assert "--corruptions: 'fog' is not one of" in caplog.text
    assert main([*args, "--severities", "1,6"]) == 2
    assert "--severities: '6'" in caplog.text
    assert main([*args, "--severities", "2,2"]) == 2
    assert "given twice" in caplog.text


def test_cli_detector_boxes_occlusion_over_matched_gt(toy_root: Path, tmp_path: Path) -> None:
    from box_files import gt_boxes

    from cmpose.robustness.run import gt_people_of_split

    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(gt_boxes(toy_root / "annotations" / "val")))
    cfg = _config(toy_root)
    table = gt_people_of_split(cfg.data, "val")
    assert len(table) == 2 * 4 and all(len(people) == 2 for people in table.values())
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, {"model": _model(cfg).state_dict(), "config": to_dict(cfg), "stage": "mcl"})
    args = ["--checkpoint", str(ckpt), "--device", "cpu", "--boxes", str(dets)]
    which = ["--corruptions", "occlusion", "--severities", "5", "--frames", "key"]
    assert main(["robustness", *args, *which, "--out", str(tmp_path / "rob")]) == 0
    report = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert report["settings"]["boxes"] == "detections" and report["settings"]["frames"] == "key"
    assert main(["test", *args, "--out", str(tmp_path / "test")]) == 0
    tested = json.loads((tmp_path / "test" / "report.json").read_text())["all"]
    assert report["clean"] == {k: tested[k] for k in TABLE}


def test_real_posetrack_sample_with_detector_boxes(pt18_sample: Path, tmp_path: Path) -> None:
    """On real 1920x1080 PoseTrack18 frames and a real detector's boxes (the clean numbers equal
    run_test's with detector boxes in test_cli_detector_boxes_occlusion_over_matched_gt)."""
    cfg = _config(pt18_sample)
    data = dataclasses.replace(cfg.data, val_detections="annotations/test_posetrack18_human_detections.json")
    test = dataclasses.replace(cfg.test, boxes="detections")
    model, clip, dev = _model(cfg), ClipConfig(num_frames=3), torch.device("cpu")
    out = run_robustness(model, data, clip, test, tmp_path, dev, corruptions=["occlusion"], severities=[3])
    assert out["settings"]["boxes"] == "detections"
    assert list(out["results"]) == ["occlusion"] and list(out["clean"]) == TABLE
    assert (tmp_path / "runs" / "occlusion_s3" / "predictions").is_dir()
