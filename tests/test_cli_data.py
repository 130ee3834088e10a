"""Tests for ``cmpose data check`` and ``cmpose data show`` (cmpose.data.check, cmpose.cli.data),
run in-process through ``cmpose.cli.main.main``."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import cv2
import pytest
import yaml

from cmpose.cli.main import main
from cmpose.data.toy import write_toy_posetrack

TOY_SIZE = (160, 120)  # (w, h)


def parse_report(text: str) -> dict[str, dict[str, int]]:
    """``== source`` blocks of ``data check`` output -> {source: {count name: value}}."""
    out: dict[str, dict[str, int]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^== (\S+)$", line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        m = re.match(r"^  ([a-z ]+?) +(\d+)", line)
        if m and current is not None:
            current[m.group(1)] = int(m.group(2))
    return out


def problem_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("    [")]


@pytest.fixture(scope="module")
def toy_template(tmp_path_factory) -> Path:
    """A clean toy dataset (3 videos x 3 frames x 2 people); tests copy it before breaking it."""
    root = tmp_path_factory.mktemp("toy_template")
    write_toy_posetrack(root, num_videos=3, num_frames=3, people=2, image_size=TOY_SIZE, seed=0)
    return root


@pytest.fixture
def toy(toy_template, tmp_path) -> Path:
    root = tmp_path / "toy"
    shutil.copytree(toy_template, root)
    return root


def edit_json(path: Path, mutate) -> None:
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))


VIDEO1 = "000001_mpii_val"


def ann_file(root: Path, video: str = VIDEO1) -> Path:
    return root / "annotations" / "val" / f"{video}.json"


# --- data check ----------------------------------------------------------------------------------


def test_check_real_sample(pt18_sample, capsys):
    rc = main(["data", "check", str(pt18_sample / "annotations" / "val")])
    out = capsys.readouterr().out
    assert rc == 0
    report = parse_report(out)
    assert list(report) == ["val"]
    counts = report["val"]
    assert counts["videos"] == 3
    assert counts["people"] == 14
    assert counts["annotated joints"] == 182
    assert counts["labelled frames"] == 3
    assert counts["frames"] == 149 + 101 + 140  # the videos' nframes
    # The one real oddity of this sample: a head top above the image, reported with its place.
    lines = problem_lines(out)
    assert len(lines) == 1
    assert lines[0].startswith("[warning] joint outside image:")
    assert "012834_mpii_test" in lines[0] and "head_top at (424, -25)" in lines[0]
    assert "field 'keypoints'" in lines[0]


def test_check_real_sample_dataset_root(pt18_sample, capsys):
    rc = main(["data", "check", str(pt18_sample)])
    out = capsys.readouterr().out
    assert rc == 0
    report = parse_report(out)
    assert set(report) == {"annotations/val", "annotations/test_posetrack18_val.json"}
    # The merged file holds the same 3 frames / 14 people as the per-video files.
    for name in report:
        assert report[name]["videos"] == 3
        assert report[name]["people"] == 14
        assert report[name]["annotated joints"] == 182
    assert "test_posetrack18_human_detections.json: detection boxes, not annotations (skipped)" in out


def test_check_clean_toy(toy, capsys):
    rc = main(["data", "check", str(toy)])
    out = capsys.readouterr().out
    assert rc == 0
    counts = parse_report(out)["annotations/val"]
    assert counts == {
        "videos": 3,
        "frames": 9,
        "listed frames": 9,
        "labelled frames": 9,
        "people": 18,
        "annotated joints": 18 * 15,
        "problems": 0,
    }
    assert "no problems found" in out


def test_check_single_annotation_file(toy, capsys):
    rc = main(["data", "check", str(ann_file(toy))])
    out = capsys.readouterr().out
    assert rc == 0
    counts = parse_report(out)[f"{VIDEO1}.json"]
    assert counts["videos"] == 1 and counts["people"] == 6


def _break_video1(d: dict) -> None:
    anns = d["annotations"]  # frame 0: anns 0, 1; frame 1: anns 2, 3; frame 2: anns 4, 5
    anns[0]["bbox"] = [10.0, 10.0, 0.0, 0.0]  # zero-size box ...
    anns[0]["keypoints"] = [0.0] * 51  # ... and no annotated joints: no usable box at all
    anns[1]["keypoints"] = anns[1]["keypoints"][:-3]  # 48 numbers instead of 51
    anns[3]["track_id"] = anns[2]["track_id"]  # two people with one track id in frame 1
    anns[5]["keypoints"] = anns[5]["keypoints"][:6] + ["x"] + anns[5]["keypoints"][7:]


def test_check_broken_toy_reports_each_problem(toy, capsys):
    edit_json(ann_file(toy), _break_video1)
    lost = toy / "images" / "val" / VIDEO1 / "000001.jpg"
    lost.unlink()

    rc = main(["data", "check", str(toy)])
    out = capsys.readouterr().out
    assert rc == 1
    counts = parse_report(out)["annotations/val"]
    assert counts["videos"] == 3
    assert counts["people"] == 18 - 3  # anns 0, 1 and 5 of video 1 are skipped
    assert counts["annotated joints"] == 15 * 15
    lines = problem_lines(out)
    json_path = str(ann_file(toy))

    def find(prefix: str, *parts: str) -> str:
        hits = [x for x in lines if x.startswith(prefix) and all(p in x for p in parts)]
        assert len(hits) == 1, (prefix, parts, lines)
        return hits[0]

    find("[error] missing image:", str(lost), f"video {VIDEO1} frame 1")
    find("[warning] zero-size box:", json_path, "annotations[0]", "field 'bbox'")
    find("[error] malformed person:", json_path, "annotations[0]", "field 'bbox'", "no usable box")
    find("[error] malformed person:", json_path, "annotations[1]", "field 'keypoints'", "got 48")
    find("[error] malformed person:", json_path, "annotations[5]", "field 'keypoints'", "'x'")
    find("[warning] repeated track id:", f"video {VIDEO1} frame 1", "field 'track_id'", "used by 2")
    assert len(lines) == 6
    assert "problems           6 (" in out


def test_check_person_without_keypoints_field(toy, capsys):
    def drop(d):
        d["annotations"][0]["bbox"] = [5.0, 5.0, 0.0, 0.0]
        del d["annotations"][0]["keypoints"]

    edit_json(ann_file(toy), drop)
    rc = main(["data", "check", str(toy)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = problem_lines(out)
    assert lines == [
        f"[error] malformed person: {ann_file(toy)}, annotations[0] (video {VIDEO1}, frame 0), "
        "field 'keypoints': missing"
    ]


def test_check_invalid_json_is_an_error_not_a_crash(toy, capsys):
    bad = ann_file(toy, "000002_mpii_val")
    bad.write_text('{"images": [1, 2,', encoding="utf-8")
    rc = main(["data", "check", str(toy)])
    out = capsys.readouterr().out
    assert rc == 1
    lines = problem_lines(out)
    assert any(
        x.startswith("[error] unreadable file:") and str(bad) in x and "not valid JSON" in x for x in lines
    ), lines


def test_check_invalid_json_does_not_hide_other_files(toy, capsys):
    ann_file(toy, "000002_mpii_val").write_text("{not json", encoding="utf-8")
    (toy / "images" / "val" / VIDEO1 / "000002.jpg").unlink()
    rc = main(["data", "check", str(toy)])
    out = capsys.readouterr().out
    assert rc == 1
    assert parse_report(out)["annotations/val"]["people"] == 12  # videos 1 and 3
    assert any(x.startswith("[error] missing image:") for x in problem_lines(out))


def test_check_repeated_track_id_names_the_file(toy, capsys):
    edit_json(ann_file(toy), lambda d: d["annotations"][3].update(track_id=d["annotations"][2]["track_id"]))
    main(["data", "check", str(toy)])
    lines = problem_lines(capsys.readouterr().out)
    hits = [x for x in lines if "repeated track id" in x]
    assert len(hits) == 1
    assert str(ann_file(toy)) in hits[0]


def test_check_max_problems_limits_the_listing(toy, capsys):
    edit_json(ann_file(toy), _break_video1)
    rc = main(["data", "check", str(toy), "--max-problems", "2"])
    out = capsys.readouterr().out
    assert rc == 1
    assert len(problem_lines(out)) == 2
    assert "problems           5 (" in out  # all are counted
    assert "... 3 more (--max-problems)" in out


def test_check_all_frames_finds_missing_unlabelled_frame(toy, capsys):
    def unlabel_frame2(d):
        d["images"][2]["is_labeled"] = False
        d["annotations"] = [a for a in d["annotations"] if a["image_id"] != d["images"][2]["id"]]

    edit_json(ann_file(toy), unlabel_frame2)
    gone = toy / "images" / "val" / VIDEO1 / "000002.jpg"
    gone.unlink()

    assert main(["data", "check", str(toy)]) == 0
    assert problem_lines(capsys.readouterr().out) == []

    assert main(["data", "check", str(toy), "--all-frames"]) == 0  # a warning, not an error
    lines = problem_lines(capsys.readouterr().out)
    assert len(lines) == 1
    assert lines[0].startswith("[warning] missing frame:") and str(gone) in lines[0]


def test_check_missing_root_exits_2_with_message(tmp_path, caplog, capsys):
    missing = tmp_path / "no_such_dataset"
    with caplog.at_level(logging.ERROR):
        rc = main(["data", "check", str(missing)])
    assert rc == 2
    assert any(str(missing) in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_check_folder_without_annotations_exits_2(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.ERROR):
        rc = main(["data", "check", str(tmp_path / "empty")])
    assert rc == 2
    assert "found no annotations" in caplog.text


def _set_nframes(d):
    d["images"][0]["nframes"] = "three"


def _set_width(d):
    d["images"][0]["width"] = "wide"


def _set_image_id(d):
    d["annotations"][0]["image_id"] = [d["annotations"][0]["image_id"]]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            _set_nframes,
        ),
        pytest.param(
            _set_width,
        ),
        pytest.param(
            _set_image_id,
        ),
    ],
)
def test_check_malformed_fields_do_not_crash(toy, capsys, mutate):
    edit_json(ann_file(toy), mutate)
    rc = main(["data", "check", str(toy)])
    assert rc in (1, 2)
    capsys.readouterr()


# --- data show: video contact sheet --------------------------------------------------------------


def read_png(path: Path):
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def test_show_video_sheet(toy, tmp_path):
    out = tmp_path / "show"
    rc = main(["data", "show", str(toy / "annotations" / "val"), "--out", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{VIDEO1}_sheet.png"]  # the first video
    sheet = read_png(out / f"{VIDEO1}_sheet.png")
    h, w = sheet.shape[:2]
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    # 3 labelled frames side by side at a common width: 3 tiles wide, 1 tile high.
    assert w >= 3 * TOY_SIZE[0]
    assert w / h == pytest.approx(3 * TOY_SIZE[0] / TOY_SIZE[1], rel=0.01)
    assert sheet.std() > 10  # an actual picture, not a blank canvas


def test_show_video_sheet_select_video_and_max_frames(toy, tmp_path):
    out = tmp_path / "show"
    video = "000003_mpii_val"
    rc = main(
        ["data", "show", str(toy / "annotations" / "val"), "--out", str(out), "--video", video]
        + ["--max-frames", "1"]
    )
    assert rc == 0
    sheet = read_png(out / f"{video}_sheet.png")
    h, w = sheet.shape[:2]
    assert w / h == pytest.approx(TOY_SIZE[0] / TOY_SIZE[1], rel=0.01)  # one frame


def test_show_unknown_video_exits_2(toy, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = main(["data", "show", str(toy / "annotations" / "val"), "--out", str(tmp_path / "o")])
        assert rc == 0
        rc = main(
            ["data", "show", str(toy / "annotations" / "val"), "--out", str(tmp_path / "o")]
            + ["--video", "nope"]
        )
    assert rc == 2
    assert "no video 'nope'" in caplog.text


def test_show_real_sample_video(pt18_sample, tmp_path):
    out = tmp_path / "show"
    video = "009473_mpii_test"
    rc = main(["data", "show", str(pt18_sample / "annotations" / "val"), "--out", str(out), "--video", video])
    assert rc == 0
    sheet = read_png(out / f"{video}_sheet.png")
    h, w = sheet.shape[:2]
    assert w / h == pytest.approx(1920 / 1080, rel=0.01)
    assert w >= 640


# --- data show: clip sheets ----------------------------------------------------------------------


def _clip_pngs(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*_clip.png"))


@pytest.mark.parametrize(("extra", "T"), [([], 3), (["--set", "clip.num_frames=5"], 5)])
def test_show_clip_sheets(toy, tmp_path, extra, T):
    out = tmp_path / "show"
    rc = main(
        ["data", "show", str(toy / "annotations" / "val"), "--out", str(out), "--clip", "0", "1", "--train"]
        + extra
    )
    assert rc == 0
    # Samples 0 and 1: the two people (tracks 0, 1) of the first labelled frame of video 1.
    assert _clip_pngs(out) == [f"{VIDEO1}_f000000_track0_clip.png", f"{VIDEO1}_f000000_track1_clip.png"]
    for name in _clip_pngs(out):
        sheet = read_png(out / name)
        h, w = sheet.shape[:2]
        # T crops + the target overlay, each a 192x256 crop scaled alike: (T + 1) tiles in one row.
        assert w / h == pytest.approx((T + 1) * 192 / 256, rel=0.01)
        assert w >= (T + 1) * 192
        assert sheet.std() > 10


def test_show_clip_with_config_file(toy, tmp_path):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"crop": {"image_size": [128, 96], "heatmap_size": [32, 24]}, "clip": {"num_frames": 1}}
        )
    )
    out = tmp_path / "show"
    rc = main(
        ["data", "show", str(toy / "annotations" / "val"), "--out", str(out), "--clip", "3"]
        + ["--config", str(cfg)]
    )
    assert rc == 0
    names = _clip_pngs(out)
    assert names == [f"{VIDEO1}_f000001_track1_clip.png"]  # sample 3: frame 1, track 1
    h, w = read_png(out / names[0]).shape[:2]
    assert w / h == pytest.approx(2 * 128 / 96, rel=0.01)  # T = 1: crop + targets


@pytest.mark.parametrize(
    ("override", "expect"),
    [
        ("augment.flip_prob=2.0x", "augment.flip_prob: expected a number, got '2.0x'"),
        ("augment.flip_probb=1", "unknown config key 'augment.flip_probb'; did you mean 'flip_prob'?"),
        ("clip.num_frames=4", "num_frames must be odd"),
        ("clip.train_step=[1]", "clip.train_step: expected 2 values, got 1"),
    ],
)
def test_show_bad_override_exits_2(toy, tmp_path, caplog, override, expect):
    out = tmp_path / "show"
    with caplog.at_level(logging.ERROR):
        rc = main(
            ["data", "show", str(toy / "annotations" / "val"), "--out", str(out), "--clip", "0"]
            + ["--set", override]
        )
    assert rc == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and expect in errors[0], errors
    assert _clip_pngs(out) == []


def test_show_missing_config_file_exits_2(toy, tmp_path, caplog):
    missing = tmp_path / "nope.yaml"
    with caplog.at_level(logging.ERROR):
        rc = main(
            ["data", "show", str(toy / "annotations" / "val"), "--out", str(tmp_path / "o"), "--clip", "0"]
            + ["--config", str(missing)]
        )
    assert rc == 2
    assert str(missing) in caplog.text and "not found" in caplog.text


def test_show_clip_index_out_of_range_exits_2(toy, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = main(
            ["data", "show", str(toy / "annotations" / "val"), "--out", str(tmp_path / "o")]
            + ["--clip", "18"]
        )
    assert rc == 2
    assert "sample 18 out of range: 18 samples" in caplog.text


def test_show_invalid_json_exits_2(toy, tmp_path, caplog):
    bad = ann_file(toy, "000002_mpii_val")
    bad.write_text("{", encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        rc = main(["data", "show", str(toy / "annotations" / "val"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert str(bad) in caplog.text and "not valid JSON" in caplog.text
