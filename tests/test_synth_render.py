"""cmpose synth internals: kinematics and motion are physical, and the hard-case labels and
visibility flags are what the rendered pixels show."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cmpose.synth import SynthConfig, generate
from cmpose.synth import hard as hard_cases
from cmpose.synth.frame import OCCLUDER_VALUE, SCORED, render_frame
from cmpose.synth.motion import WEIGHTS, plan_motion
from cmpose.synth.plan import plan_video
from cmpose.synth.skeleton import NUM_DOF, RIGID_LIMBS, forward_kinematics, limb_lengths, sample_body

SIZE = (192, 108)


@pytest.fixture(scope="module")
def plans():
    cfg = SynthConfig(videos=4, frames=24, people=(2, 3), size=SIZE, hard_ratio=1.0, seed=2)
    return [plan_video(i, cfg, "train") for i in range(cfg.videos)]


def test_limb_lengths_are_constants_of_the_person():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        body = sample_body(rng)
        motion = plan_motion(rng, 150, 25.0, (-1.0, 1.0), 0.0, fast=seed % 2 == 1)
        joints, _ = forward_kinematics(motion.angles, body)
        lengths = limb_lengths(joints)
        assert lengths.shape == (150, len(RIGID_LIMBS))
        np.testing.assert_allclose(lengths, lengths[:1].repeat(150, 0), atol=1e-9)
        # left and right of one body match; the body is about 1 tall when standing
        np.testing.assert_allclose(lengths[0, [0, 1, 4, 5]], lengths[0, [2, 3, 6, 7]], atol=1e-9)
        assert 0.9 < forward_kinematics(np.zeros((1, NUM_DOF)), body)[0][0, :, 1].max() < 1.05


def test_motion_is_smooth_and_varied():
    names = set()
    for seed in range(12):
        rng = np.random.default_rng(seed)
        body = sample_body(rng)
        motion = plan_motion(rng, 200, 25.0, (-1.0, 1.0), 0.0, fast=seed % 3 == 0)
        names |= {n for _, n in motion.activities}
        joints, _ = forward_kinematics(motion.angles, body)
        joints[..., 0] += motion.dx[:, None]
        step = np.linalg.norm(np.diff(joints[:, SCORED], axis=0), axis=-1)  # heights per frame
        assert step.max() < 0.3, step.max()  # fast running limbs, never a jump between poses
        assert np.median(step) < 0.05
        assert np.abs(np.diff(motion.angles, axis=0)).max() < 0.7  # radians per frame (fast arm swings)
        assert (motion.dx >= -1.0 - 0.2).all() and (motion.dx <= 1.0 + 0.2).all()  # stays in its lane
    assert names == set(WEIGHTS)  # every motion program occurs


def test_visible_joints_lie_on_the_body_and_hidden_ones_are_covered(plans):
    hidden = visible = 0
    for plan in plans:
        for t in range(0, plan.n_frames, 3):
            frame = render_frame(plan, t)
            for person in frame.people:
                k = next(i for i, p in enumerate(plan.people) if p.track_id == person.track_id)
                alone = render_frame(plan, t, only=k).owner == k + 1  # the body without anything in front
                on = person.keypoints[:, 2] > 0
                xy = np.round(person.keypoints[on, :2]).astype(int)
                assert alone[xy[:, 1], xy[:, 0]].all()  # every annotated joint is on its body
                owner = frame.owner[xy[:, 1], xy[:, 0]]
                vis = person.visible[on] == 1
                assert (owner[vis] == k + 1).all()
                # hidden: covered by another person or an occluding object, not by the background
                assert ((owner[~vis] != k + 1) & (owner[~vis] != 0)).all()
                hidden += int((~vis).sum())
                visible += int(vis.sum())
    assert hidden > 10 and visible > hidden


def test_occluders_and_passers_by_hide_joints(plans):
    causes = set()
    for plan in plans:
        for t in range(plan.n_frames):
            frame = render_frame(plan, t)
            for person in frame.people:
                k = next(i for i, p in enumerate(plan.people) if p.track_id == person.track_id)
                on = (person.keypoints[:, 2] > 0) & (person.visible == 0)
                xy = np.round(person.keypoints[on, :2]).astype(int)
                causes |= {
                    "object" if v == OCCLUDER_VALUE else "person" for v in frame.owner[xy[:, 1], xy[:, 0]]
                }
                assert ("occlusion" in person.hard) == bool(on.any())
                assert k + 1 not in frame.owner[xy[:, 1], xy[:, 0]]
    assert causes == {"object", "person"}


def test_truncated_joints_are_unannotated_and_labelled(plans):
    w, h = SIZE
    seen = 0
    for plan in plans:
        for t in range(plan.n_frames):
            for person in render_frame(plan, t).people:
                k = next(i for i, p in enumerate(plan.people) if p.track_id == person.track_id)
                xy = plan.people[k].joints[t]
                inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
                np.testing.assert_array_equal(person.keypoints[:, 2] > 0, inside & SCORED)
                assert ("truncation" in person.hard) == bool((SCORED & ~inside).any())
                seen += "truncation" in person.hard
    assert seen > 0


def test_written_frames_are_the_rendered_ones(tmp_path):
    cfg = SynthConfig(videos=1, frames=6, size=SIZE, hard_ratio=1.0, val_ratio=0.0, seed=5, quality=95)
    generate(tmp_path, cfg, progress=False)
    plan = plan_video(0, cfg, "train")
    for t in range(cfg.frames):
        jpg = cv2.imread(str(tmp_path / "images" / "train" / plan.name / f"{t:06d}.jpg"))
        # JPEG loses some of the low-light noise: compare slightly smoothed frames
        a, b = (cv2.GaussianBlur(i, (0, 0), 1.0).astype(float) for i in (jpg, render_frame(plan, t).image))
        assert np.abs(a - b).mean() < 4.0  # JPEG (chroma subsampling) of small frames


def test_ignore_regions_surround_the_unannotated_crowd():
    cfg = SynthConfig(videos=6, frames=4, size=SIZE, hard_ratio=0.0, seed=1)
    with_crowd = [p for p in (plan_video(i, cfg, "train") for i in range(6)) if p.crowd]
    assert with_crowd
    for plan in with_crowd:
        regions = render_frame(plan, 0).ignore_regions
        assert len(regions) == 1
        x0, y0 = regions[0].min(0)
        x1, y1 = regions[0].max(0)
        for person in plan.crowd:
            head = person.joints[0, 2]
            if 0 <= head[0] < SIZE[0] and 0 <= head[1] < SIZE[1]:
                assert x0 < head[0] < x1 and y0 < head[1] < y1
            assert person.track_id == -1 and person.px[0] < 0.15 * SIZE[1]  # tiny, never annotated


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.7, 1.0])
def test_schedule_covers_the_requested_fraction(ratio):
    fractions = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        people, frames = int(rng.integers(1, 4)), int(rng.integers(8, 60))
        covered = np.zeros((people, frames), bool)
        for ev in hard_cases.schedule(rng, people, frames, ratio):
            assert 0 <= ev.start < ev.end <= frames and ev.kind in hard_cases.HARD_LABELS
            covered[slice(None) if ev.target < 0 else ev.target, ev.start : ev.end] = True
        fractions.append(covered.mean())
    assert np.mean(fractions) == pytest.approx(ratio, abs=0.08)


def test_hard_ratio_controls_the_labelled_fraction(tmp_path):
    measured = []
    for ratio in (0.0, 1.0):
        cfg = SynthConfig(videos=3, frames=12, size=(128, 72), hard_ratio=ratio, val_ratio=0.0, seed=9)
        measured.append(generate(tmp_path / str(ratio), cfg, progress=False).hard_fraction)
    assert measured[0] < 0.05 < 0.6 < measured[1]
