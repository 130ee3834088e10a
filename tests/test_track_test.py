"""``cmpose test --track`` end to end on a tiny synthetic set: GT boxes with a perfect (oracle) model
track every person without a switch, a tracker that cannot match costs MOTA, and the every-frame
detector boxes are tracked over every frame with track ids in the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_engine_testing import CROP, OracleModel, _data_config, _val_dataset

from cmpose.data.config import ClipConfig
from cmpose.engine.config import TestConfig as EngineTestConfig
from cmpose.engine.testing_track import TrackTestConfig, run_track_test
from cmpose.errors import ConfigError
from cmpose.keypoints import NUM_JOINTS
from cmpose.synth import SynthConfig, generate
from cmpose.synth.detections import ALL_FRAMES_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP = ClipConfig(num_frames=1)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_track_test")
    cfg = SynthConfig(
        videos=2, frames=16, people=(2, 3), size=(160, 96), hard_ratio=0.3, val_ratio=0.5, seed=2
    )
    generate(root, cfg, progress=False)
    return root


@pytest.fixture(scope="module")
def oracle(synth_root: Path) -> OracleModel:
    return OracleModel(_val_dataset(synth_root, CLIP))


def _gt_test() -> EngineTestConfig:
    return EngineTestConfig(flip_test=False, boxes="gt", workers=0, batch_size=16)


def test_gt_boxes_and_an_oracle_track_without_switches(synth_root, oracle, tmp_path) -> None:
    report = run_track_test(
        oracle, _data_config(synth_root), CLIP, _gt_test(), tmp_path, torch.device("cpu"), None
    )
    assert report["boxes"] == "gt" and report["all"]["Total"] == 100.0
    counts = report["mota"]["counts"]
    assert sum(c["switches"] for c in counts.values()) == 0
    assert sum(c["false_positives"] + c["misses"] for c in counts.values()) == 0
    assert report["mota"]["MOTA"]["Total"] == 100.0
    # GT boxes exist on the labelled frames only: the tracker steps over those (every 4th frame).
    assert report["track"]["covered_frames"] == 4
    pred = json.loads(next((tmp_path / "predictions").glob("*.json")).read_text())
    gt = json.loads(next((synth_root / "annotations" / "val").glob("*.json")).read_text())
    assert len(pred["annotations"]) == len(gt["annotations"])
    assert {a["track_id"] for a in pred["annotations"]} == set(
        range(len({a["track_id"] for a in gt["annotations"]}))
    )
    md = (tmp_path / "report.md").read_text()
    assert "PoseTrack MOTA" in md and "PoseTrack mAP" in md
    assert json.loads((tmp_path / "report.json").read_text())["mota"]["MOTA"]["Total"] == 100.0


def test_a_tracker_that_never_matches_costs_mota_not_map(synth_root, oracle, tmp_path) -> None:
    never = TrackTestConfig(match_threshold=1.01)  # every person a new id in every frame
    report = run_track_test(
        oracle,
        _data_config(synth_root),
        CLIP,
        _gt_test(),
        tmp_path,
        torch.device("cpu"),
        None,
        settings=never,
    )
    assert report["all"]["Total"] == 100.0
    assert sum(c["switches"] for c in report["mota"]["counts"].values()) > 0
    assert report["mota"]["MOTA"]["Total"] < 90.0


class CentreModel:
    """Every joint at the crop's centre with score 0.9: enough to exercise the pipeline."""

    def eval(self) -> CentreModel:
        return self

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.zeros(frames.shape[0], 1, 1)

    def forward_tokens(self, tokens: torch.Tensor) -> dict:
        hh, wh = CROP.heatmap_size[1], CROP.heatmap_size[0]
        h = torch.zeros(tokens.shape[0], NUM_JOINTS, hh, wh)
        h[:, :, hh // 2, wh // 2] = 0.9
        return {"heatmaps": h}


def test_every_frame_detections_are_tracked_over_every_frame(synth_root, tmp_path) -> None:
    # The detector "missed" everybody on labelled frame 4: bridging fills it from frames 3 and 5.
    every = json.loads((synth_root / "detections" / ALL_FRAMES_FILE).read_text())
    gt = json.loads(next((synth_root / "annotations" / "val").glob("*.json")).read_text())
    frame4 = gt["images"][4]["id"]
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([d for d in every if d["image_id"] != frame4]))
    data = _data_config(synth_root, val_detections=str(dets))
    test = EngineTestConfig(flip_test=False, boxes="detections", workers=0, batch_size=64)
    out = tmp_path / "out"
    runs = {}
    for fill in (False, True):
        settings = TrackTestConfig(fill=fill, joint_threshold=0.5)
        runs[fill] = run_track_test(
            CentreModel(), data, CLIP, test, out / str(fill), torch.device("cpu"), None, settings=settings
        )
    report = runs[True]
    assert report["boxes"] == "detections"
    assert report["track"]["covered_frames"] == 16  # the file has boxes on unlabelled frames
    assert runs[False]["track"]["filled_boxes"] == 0 and report["track"]["filled_boxes"] >= 1
    pred = json.loads(next((out / "True" / "predictions").glob("*.json")).read_text())
    by_image: dict[int, set[int]] = {}
    for a in pred["annotations"]:
        by_image.setdefault(a["image_id"], set()).add(a["track_id"])
    labelled = {im["id"] for im in pred["images"] if im["is_labeled"]}
    assert len(set(by_image) - labelled) > 8  # unlabelled frames carry people too
    # the filled people of frame 4 carry the ids their tracks have on frames 3 and 5
    ids3, ids4, ids5 = (by_image[gt["images"][t]["id"]] for t in (3, 4, 5))
    assert len(ids4) == report["track"]["filled_boxes"] and ids4 <= ids3 & ids5
    before = json.loads(next((out / "False" / "predictions").glob("*.json")).read_text())
    assert frame4 not in {a["image_id"] for a in before["annotations"]}
    # the same track ids reach the MOTA files
    mota = json.loads(next((out / "True" / "predictions_mota").glob("*.json")).read_text())
    assert {a["track_id"] for a in mota["annotations"]} <= {a["track_id"] for a in pred["annotations"]}
    assert set(report["mota"]["MOTA"]) >= {"Head", "Total"}


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_gap"):
        TrackTestConfig(max_gap=-1)
    with pytest.raises(ConfigError, match="fill_iou"):
        TrackTestConfig(fill_iou=0.0)


def test_cli_options_become_settings() -> None:
    from cmpose.cli.main import build_parser
    from cmpose.engine.testing_track import track_settings

    args = build_parser().parse_args(
        [
            "test",
            "--checkpoint",
            "c.pt",
            "--track",
            "--track-oks-weight",
            "0",
            "--track-fill",
            "--track-max-gap",
            "2",
        ]
    )
    assert args.track
    s = track_settings(args)
    assert (s.oks_weight, s.iou_weight, s.fill, s.max_gap, s.motion) == (0.0, 1.0, True, 2, False)
    assert track_settings(build_parser().parse_args(["test", "--checkpoint", "c.pt"])) == TrackTestConfig()
