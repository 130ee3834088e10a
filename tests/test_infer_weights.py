"""``cmpose infer`` with any supported checkpoint (cmpose.infer.weights): ViTPose files with the
real key layout and random weights (classic and simple head, ViT-B width with 2 blocks as in
tests/reference_vitpose.py), an mmpose 1.x file and its conversion; what the model was trained on
(the trainer's record, the synth marker) and the one warning for a synthetic-trained model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from reference_vitpose import IMG, ClassicHead, SimpleHead, TopDown, ViTPoseViT, randomize
from test_checkpoint_layouts import MMPOSE_NAMES, mmengine_meta
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.api import load_inference_model
from cmpose.checkpoint import CheckpointError
from cmpose.cli import main as cli_main
from cmpose.engine.checkpointing import (
    config_of,
    read_checkpoint,
    read_train_data,
    save_checkpoint,
    train_data_record,
)
from cmpose.engine.config import DataConfig
from cmpose.engine.predict import predict_clips
from cmpose.eval.formats import load_video
from cmpose.infer.detect import FileBoxes
from cmpose.infer.weights import COCO17_NAMES, flip_index, meta_joint_names
from cmpose.keypoints import FLIP_INDEX, PT18_NAMES
from cmpose.ops.heatmap import flip_back
from cmpose.synth import SynthConfig, generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEPTH = 2


def topdown(head: str, seed: int, dim: int = 768, heads: int = 12) -> TopDown:
    make = ClassicHead if head == "classic" else SimpleHead
    return randomize(TopDown(ViTPoseViT(DEPTH, dim=dim, heads=heads), make(dim, 17)), seed)


@pytest.fixture(scope="module")
def vitpose_files(tmp_path_factory) -> dict[str, tuple[Path, TopDown]]:
    """ViTPose-B layout files (mmcv's wrapper: meta + state_dict), one per head."""
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for seed, head in enumerate(("classic", "simple")):
        ref = topdown(head, seed=seed + 1)
        path = folder / f"vitpose-b-{head}.pth"
        torch.save({"meta": {"mmcv_version": "1.3.9"}, "state_dict": ref.state_dict()}, path)
        out[head] = (path, ref)
    return out


@pytest.fixture(scope="module")
def street(sample_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The sample's 1280x720 street frames and a detections file with two people on frames 0, 1."""
    boxes = tmp_path_factory.mktemp("boxes") / "dets.json"
    dets = [
        {"frame_index": f, "bbox": box, "score": s}
        for f in (0, 1)
        for box, s in (([400.0, 250.0, 120.0, 330.0], 0.9), ([700.0 + 5 * f, 200.0, 100.0, 300.0], 0.8))
    ]
    boxes.write_text(json.dumps(dets))
    return sample_data / "posetrack18-sample" / "videos" / "000001_mpiinew_test", boxes


def infer(video: Path, checkpoint: Path, out: Path, *extra: str) -> int:
    args = ["infer", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--threads", "1"]
    return cli_main.main([*args, "--max-frames", "2", *extra])


# --- outside weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["classic", "simple"])
def test_vitpose_file_runs_and_writes_every_output(vitpose_files, street, tmp_path: Path, head: str) -> None:
    path, _ = vitpose_files[head]
    video, boxes = street
    assert infer(video, path, tmp_path, "--boxes", str(boxes)) == 0
    name = video.name
    lines = [json.loads(s) for s in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == [0, 1]
    assert [len(line["people"]) for line in lines] == [2, 2]
    kp = np.array([p["keypoints"] for p in lines[0]["people"]])
    assert kp.shape == (2, 17, 2) and np.isfinite(kp).all() and (tmp_path / f"{name}.mp4").stat().st_size > 0
    # PoseTrack18: COCO's eyes are not head_bottom / head_top, so those two are not predicted
    pt = load_video(tmp_path / "posetrack" / f"{name}.json", "pred")
    assert pt.n_frames == 2 and len(pt.people.frame) == 4 and pt.n_unscored == 0
    raw = json.loads((tmp_path / "posetrack" / f"{name}.json").read_text())
    assert raw["images"][0]["file_name"] == f"images/val/{name}/000000.jpg"
    assert raw["images"][1]["id"] == 3 * 10**10 + 1 * 10**4 + 1  # mpiinew video 000001, frame 1
    for ann in raw["annotations"]:
        assert ann["keypoints"][3:9] == [0.0, 0.0, 0, 0.0, 0.0, 0]
    # COCO results: the model's 17 COCO joints; cmpose's detections reader takes the file back
    coco = json.loads((tmp_path / "coco" / f"{name}.json").read_text())
    assert len(coco) == 4 and all(len(r["keypoints"]) == 51 for r in coco)
    np.testing.assert_allclose(np.array(coco[0]["keypoints"]).reshape(17, 3)[:, :2], kp[0], atol=0.01)
    assert FileBoxes(tmp_path / "coco" / f"{name}.json", name, score_threshold=0.0).frames == [0, 1]


def test_posetrack_output_of_a_sample_video_goes_straight_into_cmpose_evaluate(
    vitpose_files, pt18_sample: Path, tmp_path: Path
) -> None:
    gt_file = pt18_sample / "annotations" / "val" / "009473_mpii_test.json"
    frames = pt18_sample / "images" / "val" / gt_file.stem
    out = tmp_path / "out"
    assert (
        infer(frames, vitpose_files["simple"][0], out, "--boxes", f"gt:{gt_file}", "--format", "posetrack")
        == 0
    )
    pred = json.loads((out / "posetrack" / gt_file.name).read_text())
    assert pred["images"] == json.loads(gt_file.read_text())["images"]  # GT boxes: the GT's own frames
    assert len(pred["annotations"]) == 2  # the two GT people, tracked
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / gt_file.name).write_bytes(gt_file.read_bytes())
    report = tmp_path / "report.json"
    args = ["evaluate", "--gt", str(gt_dir), "--pred", str(out / "posetrack"), "--json", str(report)]
    assert cli_main.main(args) == 0
    numbers = json.loads(report.read_text())
    assert 0.0 <= numbers["Total"] <= 100.0  # random weights: the structure, not the accuracy
    assert numbers["joints"]["head_top"]["ap"] == numbers["joints"]["head_bottom"]["ap"] == 0.0


def test_outside_model_is_the_reference_with_coco_flip_pairs(vitpose_files) -> None:
    path, ref = vitpose_files["classic"]
    loaded = load_inference_model(path)
    assert loaded.kind == "vitpose" and loaded.joint_names == COCO17_NAMES
    assert loaded.train_data["synthetic"] is False and loaded.model.num_frames == 1
    x = torch.randn(1, 3, *IMG, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        plain, mirrored = ref(x), ref(x.flip(-1))
        heatmaps, _ = predict_clips(loaded.model, x[:, None], flip_test=True)
    # the flip test swaps COCO's eyes (PoseTrack18's pairs would leave them crossed)
    expected = 0.5 * (plain + flip_back(mirrored, flip_index(COCO17_NAMES)))
    torch.testing.assert_close(heatmaps, expected, atol=1e-4, rtol=0)
    wrong = 0.5 * (plain + flip_back(mirrored))
    assert (heatmaps - wrong).abs().max() > 1e-3


def test_flip_index_from_names() -> None:
    coco = flip_index(COCO17_NAMES)
    assert coco[:5] == (0, 2, 1, 4, 3) and coco == tuple(mmengine_meta()["dataset_meta"]["flip_indices"])
    assert flip_index(PT18_NAMES) == FLIP_INDEX


def test_mmpose1x_file_and_its_conversion_run(vitpose_files, street, tmp_path: Path) -> None:
    _, ref = vitpose_files["simple"]
    sd = {}
    for k, v in ref.state_dict().items():
        for ours, theirs in MMPOSE_NAMES:
            k = k.replace(ours, theirs)
        sd[k] = v
    sd["backbone.pos_embed"] = sd["backbone.pos_embed"][:, 1:]  # mmpose 1.x: patches only
    src = tmp_path / "td-hm_ViTPose-base-simple_mmpose1x.pth"
    torch.save({"meta": mmengine_meta(), "state_dict": sd}, src)
    video, boxes = street
    # --format picks a subset: only the PoseTrack file is written
    assert (
        infer(video, src, tmp_path / "out", "--boxes", str(boxes), "--format", "posetrack", "--no-flip") == 0
    )
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*"))
    assert written == ["posetrack", f"posetrack/{video.name}.json"]
    converted = tmp_path / "converted.safetensors"
    fit = [f"model.backbone.depth={DEPTH}", "model.head.kind=simple", "stages.0.kind=single"]
    assert cli_main.main(["convert", str(src), str(converted), *(a for o in fit for a in ("--set", o))]) == 0
    a, b = load_inference_model(src), load_inference_model(converted)
    assert a.kind == b.kind == "mmpretrain" and b.joint_names == COCO17_NAMES
    for k, v in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k


def test_joint_names_from_an_mmengine_files_dataset_meta() -> None:
    assert meta_joint_names({"meta": mmengine_meta(), "state_dict": {}}) == (COCO17_NAMES, "coco")
    pt = {"meta": {"dataset_meta": {"dataset_name": "posetrack18"}}}
    assert meta_joint_names(pt) == (PT18_NAMES, "posetrack18")
    named = {"meta": {"dataset_meta": {"dataset_name": "x", "keypoint_id2name": dict(enumerate(PT18_NAMES))}}}
    assert meta_joint_names(named) == (PT18_NAMES, "x")
    assert meta_joint_names({"state_dict": {}}) == (None, None)  # ViTPose's mmcv files: COCO assumed


def test_the_vit_size_is_read_from_the_weights(tmp_path: Path) -> None:
    small = topdown("simple", seed=7, dim=384, heads=12)
    path = tmp_path / "vitpose-s.pth"
    torch.save({"state_dict": small.state_dict()}, path)
    model = load_inference_model(path).model  # posetrack18_vitb is ViT-B: fitted to the file
    assert model.backbone.embed_dim == 384 and len(model.backbone.blocks) == DEPTH
    odd = topdown("simple", seed=8, dim=96, heads=4)
    torch.save({"state_dict": odd.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"width 96; cmpose knows widths \[128, 384, 768, 1024, 1280\]"):
        load_inference_model(path)


def test_a_backbone_only_file_is_refused(vitpose_files, tmp_path: Path) -> None:
    _, ref = vitpose_files["simple"]
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": {k: v for k, v in ref.state_dict().items() if k.startswith("backbone.")}}, path)
    with pytest.raises(CheckpointError, match="no keypoint head"):
        load_inference_model(path)


# --- what the model was trained on ---------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(
        root,
        SynthConfig(videos=2, frames=4, size=(192, 128), people=(1, 2), val_ratio=0.5, seed=3),
        progress=False,
    )
    return root


def test_train_data_record_reads_the_generators_marker(synth_root: Path, pt18_sample: Path, tmp_path) -> None:
    record = train_data_record(DataConfig(root=str(synth_root)))
    assert record["synthetic"] is True and record["source"] == "cmpose synth"
    ann = json.loads(next((synth_root / "annotations" / "train").glob("*.json")).read_text())
    assert ann["info"]["generator"] == "cmpose synth"
    # without synth.json the files' marker alone decides
    (synth_root / "synth.json").rename(tmp_path / "synth.json")
    try:
        assert train_data_record(DataConfig(root=str(synth_root)))["synthetic"] is True
    finally:
        (tmp_path / "synth.json").rename(synth_root / "synth.json")
    real = train_data_record(DataConfig(root=str(pt18_sample), train="annotations/val"))
    assert real["synthetic"] is False
    assert train_data_record(DataConfig(root=str(tmp_path / "gone")))["synthetic"] is None


@pytest.fixture(scope="module")
def synthetic_checkpoint(synth_root: Path, tmp_path_factory) -> Path:
    """A tiny single-frame model trained for a few steps on the synthetic data."""
    out = tmp_path_factory.mktemp("run")
    cfg = {
        "data": {"root": str(synth_root), "batch_size": 2, "workers": 0, "crop": TINY_CROP},
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 1},
        "stages": [{"name": "single", "kind": "single", "epochs": 1}],
        "run": {"val_every": 0, "amp": "off"},
        "test": {"boxes": "gt", "workers": 0, "flip_test": False},
    }
    config = out / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert cli_main.main(["train", str(config), "--out", str(out / "run")]) == 0
    return out / "run" / "single" / "final.pt"


def test_a_synthetic_trained_checkpoint_warns_once(
    synthetic_checkpoint: Path, synth_root: Path, tmp_path: Path, caplog
) -> None:
    assert read_checkpoint(synthetic_checkpoint)["train_data"]["synthetic"] is True  # the trainer's record
    video = next((synth_root / "images" / "val").iterdir())
    with caplog.at_level(logging.WARNING):
        assert infer(video, synthetic_checkpoint, tmp_path, "--boxes", "hog", "--format", "jsonl") == 0
    said = [r.getMessage() for r in caplog.records if "synthetic" in r.getMessage()]
    assert len(said) == 1 and "not meaningful" in said[0] and "real footage" in said[0]


def test_an_old_checkpoint_without_the_record(synthetic_checkpoint: Path, tmp_path: Path) -> None:
    state = read_checkpoint(synthetic_checkpoint)
    del state["train_data"]
    old = tmp_path / "old.pt"
    save_checkpoint(old, state)
    loaded = load_inference_model(old)  # its config's data still carries the marker
    assert loaded.train_data["synthetic"] is True and "no record" in loaded.train_data["source"]
    moved = {**state["config"], "data": {**state["config"]["data"], "root": str(tmp_path / "gone")}}
    unknown = read_train_data(state, config_of({"config": moved}, old))  # data no longer there
    assert unknown["synthetic"] is None and unknown["source"].startswith("unknown")
