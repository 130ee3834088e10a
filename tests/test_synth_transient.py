"""cmpose synth versions: version 1 writes what the generator wrote before versions existed;
version 2 adds transient events of 1-3 frames on labelled frames and a per-joint ``visible_dt``
that is what the rendered frames show."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from cmpose.cli.main import main
from cmpose.eval.joint_classes import classify
from cmpose.synth import SynthConfig, generate
from cmpose.synth.frame import OCCLUDER_VALUE, render_frame
from cmpose.synth.plan import plan_video
from cmpose.synth.transient import TRANSIENT_GAP, TRANSIENT_KINDS, visible_dt

# Recorded with the generator as it was before versions existed (git HEAD e2c657f, 2026-12-07):
# sha256 (first 16 hex digits) of each annotation file's images/annotations/categories, of every
# JPEG's bytes, of detections/val_boxes.json and of synth.json (``_digest``). A top-level key added
# to the annotation files (e.g. an "info" block) does not count as a change of the data.
V1_CONFIG = SynthConfig(
    videos=3, frames=9, people=(2, 3), size=(160, 96), hard_ratio=0.7, val_ratio=0.34, seed=11
)
V1_DIGEST = {
    "annotations": "5dacf36359d9fcc3",
    "images": "ab3c5db515b18021",
    "val_boxes": "1168ea7e87d72a00",
    "synth_json": "d7714d5e9d230bad",
}
SIZE = (192, 108)


def _digest(root: Path) -> dict[str, str]:
    h = {name: hashlib.sha256() for name in V1_DIGEST}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("annotations/") and p.is_file():
            d = json.loads(p.read_bytes())
            h["annotations"].update(
                rel.encode() + json.dumps([d["images"], d["annotations"], d["categories"]]).encode()
            )
        elif rel.startswith("images/") and p.is_file():
            h["images"].update(rel.encode() + p.read_bytes())
    h["val_boxes"].update((root / "detections" / "val_boxes.json").read_bytes())
    h["synth_json"].update((root / "synth.json").read_bytes())
    return {k: v.hexdigest()[:16] for k, v in h.items()}


def test_version_1_output_is_unchanged(tmp_path):
    assert V1_CONFIG.version == 1  # the default
    generate(tmp_path, V1_CONFIG, progress=False)
    assert _digest(tmp_path) == V1_DIGEST
    manifest = json.loads((tmp_path / "synth.json").read_text())
    assert "version" not in manifest["config"] and "visible_dt" not in manifest["counts"]
    ann = json.loads((tmp_path / "annotations" / "val" / "000003_mpii_test.json").read_text())
    assert ann["annotations"] and not any("visible_dt" in a for a in ann["annotations"])


def test_version_2_is_version_1_plus_the_transient_events(tmp_path):
    """With no transient event a version 2 set has version 1's frames and annotations, plus visible_dt."""
    base = SynthConfig(videos=2, frames=6, size=(96, 64), hard_ratio=0.6, val_ratio=0.5, seed=3)
    v2 = SynthConfig(**{**base.__dict__, "version": 2, "transient_ratio": 0.0})
    generate(tmp_path / "v1", base, progress=False)
    generate(tmp_path / "v2", v2, progress=False)
    for p in sorted((tmp_path / "v1").rglob("*.jpg")):
        assert p.read_bytes() == (tmp_path / "v2" / p.relative_to(tmp_path / "v1")).read_bytes()
    for p in sorted((tmp_path / "v1" / "annotations").rglob("*.json")):
        a = json.loads(p.read_text())["annotations"]
        b = json.loads((tmp_path / "v2" / p.relative_to(tmp_path / "v1")).read_text())["annotations"]
        assert a and all(len(y.pop("visible_dt")) == 17 for y in b) and a == b
    manifest = json.loads((tmp_path / "v2" / "synth.json").read_text())
    assert manifest["config"]["version"] == 2 and manifest["config"]["class_window"] == 4


@pytest.fixture(scope="module")
def v2_plans():
    """Version 2 videos without long hard events: every hidden joint is a transient event's doing."""
    cfg = SynthConfig(
        videos=6, frames=24, people=(1, 3), size=SIZE, hard_ratio=0.0, version=2, transient_ratio=0.8, seed=4
    )
    return [plan_video(i, cfg, "val" if i % 2 else "train") for i in range(cfg.videos)]


def test_transient_events_are_short_and_on_labelled_frames(v2_plans):
    kinds, middles = set(), []
    for plan in v2_plans:
        events = plan.transients
        assert events
        for ev in events:
            kinds.add(ev.kind)
            assert ev.kind in TRANSIENT_KINDS
            assert 1 <= ev.end - ev.start <= (3 if ev.kind == "crossing" else 1)
            assert plan.labelled[ev.start : ev.end].any()  # lands on a labelled frame
            assert (ev.target >= 0) == (ev.kind in ("crossing", "limb"))
        middles = [int(np.flatnonzero(plan.labelled[e.start : e.end])[0]) + e.start for e in events]
        assert (np.diff(middles) >= TRANSIENT_GAP).all()
        # a transient object is drawn in its event's frames only
        objects = [o for o in plan.occluders if o.present is not None]
        occluding = [e for e in events if e.kind in ("crossing", "limb")]
        assert len(objects) == len(occluding)
        for obj, ev in zip(objects, occluding, strict=True):
            assert np.flatnonzero(obj.present).tolist() == list(range(ev.start, ev.end))
    assert kinds == set(TRANSIENT_KINDS)


def test_transient_occluders_hide_joints_only_during_their_event(v2_plans):
    """hard_ratio 0: people never overlap, so a joint is hidden exactly when a transient object
    covers it, in the 1-3 frames of a crossing or limb event."""
    hidden_frames = 0
    for plan in v2_plans:
        covered = np.zeros(plan.n_frames, bool)
        for ev in plan.transients:
            if ev.kind in ("crossing", "limb"):
                covered[ev.start : ev.end] = True
        for t in range(plan.n_frames):
            frame = render_frame(plan, t)
            for person in frame.people:
                hidden = (person.keypoints[:, 2] > 0) & (person.visible == 0)
                if hidden.any():
                    assert covered[t], (plan.name, t)
                    xy = np.round(person.keypoints[hidden, :2]).astype(int)
                    assert (frame.owner[xy[:, 1], xy[:, 0]] == OCCLUDER_VALUE).all()
                    hidden_frames += 1
    assert hidden_frames >= 10


def test_frame_effects_label_every_person():
    cfg = SynthConfig(videos=3, frames=16, size=SIZE, hard_ratio=0.0, version=2, transient_ratio=1.0, seed=8)
    seen = set()
    for i in range(cfg.videos):
        plan = plan_video(i, cfg, "val")
        for ev in (e for e in plan.transients if e.frame_label):
            frame = render_frame(plan, ev.start)
            plain = render_frame(dataclasses.replace(plan, transients=[]), ev.start)
            assert frame.people and all(ev.frame_label in p.hard for p in frame.people)
            assert not any(ev.frame_label in p.hard for p in plain.people)  # hard_ratio 0: nothing else
            assert np.abs(frame.image.astype(int) - plain.image.astype(int)).mean() > 1.0  # visibly changed
            seen.add(ev.kind)
    assert seen == {"shake", "defocus", "flash"}


def test_visible_dt_on_a_constructed_case():
    T, window = 7, 3
    annotated = np.ones(4, bool)
    annotated[3] = False
    # joint 0 visible everywhere; 1 hidden only at frame 3; 2 hidden at 2..4 (visible at 1 and 5)
    seen = [{5: np.array([True, f != 3, f not in (2, 3, 4), True])} for f in range(T)]
    assert visible_dt(seen, 3, 5, annotated, window).tolist() == [0, 1, 2, -1]  # unannotated: -1
    assert visible_dt(seen, 3, 5, annotated, 1).tolist() == [0, 1, -1, -1]  # beyond the window
    assert classify(visible_dt(seen, 3, 5, annotated, window), annotated, 1).tolist() == [0, 1, 2, -1]
    assert classify(visible_dt(seen, 3, 5, annotated, window), annotated, 2).tolist() == [0, 1, 1, -1]
    # a person absent from a frame shows nothing there; frames beyond the video do not exist
    seen[2], seen[4] = {}, {7: np.ones(4, bool)}
    seen[3] = {5: np.array([True, False, False, False])}
    assert visible_dt(seen, 3, 5, annotated, window).tolist() == [0, 2, 2, -1]
    assert visible_dt(seen, 0, 5, annotated, window).tolist() == [0, 0, 0, -1]
    seen[0] = {5: np.zeros(4, bool)}
    assert visible_dt(seen, 0, 5, annotated, window).tolist() == [1, 1, 1, -1]


def test_written_visible_dt_matches_the_visibility_of_the_frames_around(tmp_path):
    """Training videos label every frame, so each person's visible flags in all frames are in the
    file: visible_dt must be the distance to the nearest frame where the joint is visible."""
    cfg = SynthConfig(
        videos=3, frames=16, size=SIZE, hard_ratio=0.3, val_ratio=0.0, version=2, transient_ratio=1.0, seed=6
    )
    summary = generate(tmp_path, cfg, progress=False)
    window_hits = np.zeros(cfg.class_window + 2, int)
    for path in sorted((tmp_path / "annotations" / "train").glob("*.json")):
        anns = json.loads(path.read_text())["annotations"]
        visible = {(a["image_id"] % 10000, a["track_id"]): np.array(a["visible"], bool) for a in anns}
        for a in anns:
            t, tid = a["image_id"] % 10000, a["track_id"]
            annotated = np.array(a["keypoints"]).reshape(17, 3)[:, 2] > 0
            expected = np.full(17, -1)
            for d in range(cfg.class_window, -1, -1):  # nearest last
                for f in (t - d, t + d):
                    flags = visible.get((f, tid))
                    if flags is not None:
                        expected[flags & annotated] = d
            assert a["visible_dt"] == expected.tolist()
            np.add.at(window_hits, expected[annotated], 1)
    assert window_hits[0] > 0 and window_hits[1] > 0 and window_hits[2] > 0  # visible, dt 1, dt 2 occur
    counts = summary.visible_dt
    assert counts is not None and sum(counts.values()) == window_hits.sum()
    assert counts["1"] == window_hits[1] and counts.get("-1", 0) == window_hits[-1]


def test_a_joint_hidden_only_on_the_keyframe_is_in_the_window_class(v2_plans):
    """Rendered case: a limb event hides a joint in one frame; it is visible in the frames next to it."""
    found = 0
    for plan in v2_plans:
        renders = [render_frame(plan, t) for t in range(plan.n_frames)]
        seen = [{p.track_id: p.visible.astype(bool) for p in r.people} for r in renders]
        for ev in (e for e in plan.transients if e.kind == "limb" and 0 < e.start < plan.n_frames - 1):
            person = next(
                p for p in renders[ev.start].people if p.track_id == plan.people[ev.target].track_id
            )
            annotated = person.keypoints[:, 2] > 0
            dt = visible_dt(seen, ev.start, person.track_id, annotated, 4)
            hidden_here = annotated & ~person.visible.astype(bool)
            cls = classify(dt, annotated, 1)
            for j in np.flatnonzero(hidden_here):
                if seen[ev.start - 1][person.track_id][j] and seen[ev.start + 1][person.track_id][j]:
                    assert dt[j] == 1 and cls[j] == 1  # hidden here, visible within window 1
                    found += 1
    assert found >= 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": 3}, "version"),
        ({"transient_ratio": 1.5}, "transient_ratio"),
        ({"class_window": 0}, "class_window"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match="^" + re.escape(field) + ": expected"):
        SynthConfig(**kwargs)


def test_cli_version_2(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["synth", str(out), "--videos", "2", "--frames", "8", "--size", "96x64", "--people", "2"]
    assert (
        main([*args, "--version", "2", "--transient-ratio", "1", "--class-window", "2", "--no-progress"]) == 0
    )
    printed = capsys.readouterr().out
    assert "flash" in printed and "joints by visible_dt (-1: not visible within 2 frames): " in printed
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["config"]["version"] == 2 and manifest["config"]["class_window"] == 2
    anns = json.loads((out / "annotations" / "val" / "000002_mpii_test.json").read_text())["annotations"]
    assert anns and all(max(a["visible_dt"]) <= 2 for a in anns)
    assert main([*args, "--version", "7"]) == 2  # a clear error, no traceback
