"""cmpose.engine testing side: person rescoring and OKS-NMS, crop -> image decoding, the flip test,
``run_test`` end to end with an oracle model, hard-frame subsets and the TCIS keypoint recall.

Stub models stand in for CM-Pose where the property under test is the engine's, not the
network's: an oracle that returns each clip's own target heatmaps must score 100 mAP."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmpose.data.build import build_clip_dataset
from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.config import DataConfig
from cmpose.engine.config import TestConfig as EngineTestConfig
from cmpose.engine.predict import decode_to_image, predict_clips
from cmpose.engine.tcis_recall import tcis_keypoint_recall
from cmpose.engine.testing import people_to_results, run_test
from cmpose.eval.subsets import frame_subset, write_frame_subset
from cmpose.keypoints import FLIP_INDEX, NUM_JOINTS
from cmpose.synth import SynthConfig, generate

CROP = CropConfig(image_size=(48, 64), heatmap_size=(12, 16), sigma=2.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_posetrack(root, num_videos=2, num_frames=4, people=2, image_size=(160, 96), split="val")
    return root


def _val_dataset(root: Path, clip: ClipConfig, crop: CropConfig = CROP, **kw):
    return build_clip_dataset(
        root / "annotations" / "val",
        train=kw.pop("train", False),
        clip=clip,
        crop=crop,
        augment=kw.pop("augment", AugmentConfig()),
        loader=LoaderConfig(min_keypoints=0),
        **kw,
    )


# --- people_to_results ---------------------------------------------------------------------------------


def _person(video, frame, xy, joint_scores, box_score=1.0, box=(0.0, 0.0, 40.0, 80.0)):
    return {
        "video": video,
        "frame": frame,
        "keypoints": np.asarray(xy, np.float64),
        "scores": np.asarray(joint_scores, np.float64),
        "box": np.asarray(box, np.float64),
        "box_score": box_score,
    }


def test_people_to_results_rescoring_nms_and_keys() -> None:
    rng = np.random.default_rng(0)
    pose = rng.uniform(10, 60, (NUM_JOINTS, 2))
    s_hi = np.full(NUM_JOINTS, 0.9)
    s_lo = np.full(NUM_JOINTS, 0.8)
    s_mixed = np.array([0.1] * 7 + [0.5] * 10)  # 7 joints below the 0.2 threshold
    people = [
        # frame 3 of video A: a near-duplicate pair (the second scores higher) and a distant pose
        _person("A", 3, pose, s_lo, box_score=1.0),
        _person("A", 3, pose + 0.3, s_hi, box_score=1.0),
        _person("A", 3, pose + 200.0, s_mixed, box_score=0.5),
        # another frame and another video, one person each
        _person("A", 7, pose, s_hi, box_score=0.4),
        _person("B", 0, pose, s_lo),
    ]
    test = EngineTestConfig(rescore_threshold=0.2, oks_nms=0.9)
    res = people_to_results(people, test)
    assert set(res) == {"A", "B"}
    assert set(res["A"]) == {3, 7} and set(res["B"]) == {0}
    frame = res["A"][3]
    assert len(frame) == 2  # the duplicate is suppressed, the distant pose kept
    kept_xy = [p.keypoints for p in frame]
    assert any(np.allclose(k, pose + 0.3) for k in kept_xy)  # the higher-scored of the pair
    assert not any(np.allclose(k, pose) for k in kept_xy)
    scores = sorted(p.score for p in frame)
    # box score x mean of the joint scores above the threshold (0.1s do not count)
    assert scores == pytest.approx([0.5 * 0.5, 1.0 * 0.9])
    assert res["A"][7][0].score == pytest.approx(0.4 * 0.9)
    assert res["B"][0][0].score == pytest.approx(0.8)
    np.testing.assert_array_equal(res["A"][7][0].scores, s_hi)
    np.testing.assert_array_equal(res["A"][7][0].box, [0.0, 0.0, 40.0, 80.0])
    # OKS-NMS off keeps the duplicate
    off = people_to_results(people, dataclasses.replace(test, oks_nms=0.0))
    assert len(off["A"][3]) == 3


def test_people_to_results_joint_scores_times_person_score() -> None:
    pose = np.random.default_rng(1).uniform(10, 60, (NUM_JOINTS, 2))
    s = np.linspace(0.1, 0.9, NUM_JOINTS)
    people = [_person("A", 0, pose, s, box_score=0.5), _person("A", 0, pose + 300, s, box_score=1.0)]
    plain = people_to_results(people, EngineTestConfig(joint_scores="heatmap"))["A"][0]
    scaled = people_to_results(people, EngineTestConfig(joint_scores="heatmap_x_person"))["A"][0]
    for a, b in zip(plain, scaled, strict=True):
        assert a.score == b.score > 0  # the person score is unchanged
        np.testing.assert_allclose(b.scores, a.scores * a.score)
    # the doubtful detection's joints now rank below the confident one's, joint by joint
    low, high = sorted(scaled, key=lambda p: p.score)
    assert np.all(low.scores < high.scores)


def test_people_to_results_person_with_no_confident_joint_scores_zero() -> None:
    people = [_person("V", 0, np.zeros((NUM_JOINTS, 2)), np.full(NUM_JOINTS, 0.1), box_score=0.9)]
    res = people_to_results(people, EngineTestConfig(rescore_threshold=0.2))
    assert res["V"][0][0].score == 0.0


# --- decode_to_image -----------------------------------------------------------------------------------


def _crop_xy(kps: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """GT image keypoints -> crop pixels, by inverting crop_to_image (independently of the code)."""
    to_crop = np.linalg.inv(np.vstack([crop_to_image, [0.0, 0.0, 1.0]]))
    return kps[:, :2] @ to_crop[:2, :2].T + to_crop[:2, 2]


@pytest.mark.parametrize("augment", ["none", "rotate_scale", "shift"])
def test_decode_to_image_inverts_the_crop(toy_root: Path, augment: str) -> None:
    # sigma 1 on the 12x16 map: with sigma 2 DARK's zero-padded blur is biased on so small a
    # map (about 0.45 heatmap px even for exact targets), which would hide the mapping's own error.
    crop = dataclasses.replace(CROP, sigma=1.0)
    aug = AugmentConfig.disabled()
    if augment == "rotate_scale":  # no flip: crop_to_image is the un-flipped crop
        aug = dataclasses.replace(aug, rotation=30.0, rotation_prob=1.0, scale=0.25)
    if augment == "shift":
        aug = dataclasses.replace(aug, shift=0.1, shift_prob=1.0)
    ds = _val_dataset(toy_root, ClipConfig(num_frames=1), crop=crop, train=True, augment=aug)
    Wh, Hh = crop.heatmap_size
    items = [ds[i] for i in range(len(ds))]
    m = np.stack([it["meta"]["crop_to_image"].numpy() for it in items])
    kps = np.stack([it["meta"]["keypoints"].numpy() for it in items])
    encoded = [ds.codec.encode(_crop_xy(k, mi), k[:, 2]) for k, mi in zip(kps, m, strict=True)]
    heatmaps = np.stack([h for h, _ in encoded])
    weight = np.stack([w for _, w in encoded])
    # the dataset's own targets are this very encoding
    np.testing.assert_allclose(np.stack([it["target"].numpy() for it in items]), heatmaps, atol=1e-5)
    xy, scores = decode_to_image(ds.codec, torch.from_numpy(heatmaps), m)
    assert xy.shape == (len(ds), NUM_JOINTS, 2) and scores.shape == (len(ds), NUM_JOINTS)
    # joints whose maximum is off the heatmap border (DARK refines only there)
    hm = np.stack([ds.codec.to_heatmap(_crop_xy(k, mi)) for k, mi in zip(kps, m, strict=True)])
    inner = (hm[..., 0] >= 1) & (hm[..., 1] >= 1) & (hm[..., 0] <= Wh - 2) & (hm[..., 1] <= Hh - 2)
    ok = (weight > 0) & inner
    assert ok.sum() >= 0.9 * (kps[..., 2] > 0).sum()
    if augment == "none":
        assert ok.sum() == (kps[..., 2] > 0).sum() == len(ds) * 15  # GT crops hold every joint
    if augment == "shift":  # the crop centre moved off the box centre, by at most 0.1 of the region
        plain = _val_dataset(
            toy_root, ClipConfig(num_frames=1), crop=crop, train=True, augment=AugmentConfig.disabled()
        )
        m0 = np.stack([plain[i]["meta"]["crop_to_image"].numpy() for i in range(len(ds))])
        centre = np.array([(crop.image_size[0] - 1) / 2, (crop.image_size[1] - 1) / 2, 1.0])
        offset = m @ centre - m0 @ centre  # (P, 2) image pixels
        size = m0[:, [0, 1], [0, 1]] * np.array(crop.image_size)  # (P, 2) region w, h (no rotation)
        assert np.all(np.abs(offset) <= 0.1 * size + 1e-6) and np.abs(offset).max() > 0.02 * size.min()
    err = np.abs(xy - kps[..., :2]).max(-1)[ok]
    assert err.max() < 0.5, f"{err.max():.3f} px"
    # and the mapping is exactly the crop affine applied to the codec's crop-pixel decoding
    crop_xy, crop_scores = ds.codec.decode(heatmaps)
    manual = np.stack([c @ mi[:, :2].T + mi[:, 2] for c, mi in zip(crop_xy, m, strict=True)])
    np.testing.assert_allclose(xy, manual, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(scores, crop_scores)


# --- predict_clips / the flip test -----------------------------------------------------------------------


class PoolingModel:
    """encode_frames: 4x4 average pooling of channel 0 (one token, the pooled map flattened);
    forward_tokens: the keyframe's pooled map, times ``gain[j]`` per joint. With equal gains the
    model commutes with the horizontal flip (pooling by 4 of a 48-wide crop does)."""

    def __init__(self, gain: torch.Tensor) -> None:
        self.gain = gain
        self.encoded: list[torch.Tensor] = []
        self.forwarded: list[torch.Tensor] = []

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        self.encoded.append(frames.clone())
        pooled = torch.nn.functional.avg_pool2d(frames[:, :1], 4)  # (BT, 1, 16, 12)
        return pooled.flatten(1)[:, None, :]  # (BT, 1, 192)

    def forward_tokens(self, tokens: torch.Tensor) -> dict:
        self.forwarded.append(tokens.clone())
        B, T = tokens.shape[:2]
        key = tokens[:, T // 2, 0].view(B, 1, 16, 12)
        return {"heatmaps": key * self.gain.view(1, -1, 1, 1)}


def _reference_flip_back(h: torch.Tensor) -> torch.Tensor:
    return h[:, list(FLIP_INDEX)].flip(-1)


def test_predict_clips_flip_average_and_batch_halves() -> None:
    g = torch.Generator().manual_seed(0)
    B, T = 2, 3
    clips = torch.randn(B, T, 3, 64, 48, generator=g)
    gain = torch.arange(1, NUM_JOINTS + 1, dtype=torch.float32)
    model = PoolingModel(gain)
    heatmaps, out = predict_clips(model, clips, flip_test=True)
    # one backbone pass over originals then mirrored frames
    assert len(model.encoded) == 1
    frames = model.encoded[0]
    assert frames.shape == (2 * B * T, 3, 64, 48)
    torch.testing.assert_close(frames[: B * T], clips.flatten(0, 1), rtol=0, atol=0)
    torch.testing.assert_close(frames[B * T :], clips.flatten(0, 1).flip(-1), rtol=0, atol=0)
    # forward_tokens got the originals first, then the mirrored clips, grouped per clip
    assert len(model.forwarded) == 2
    plain = model.forwarded[0]
    mirrored = model.forwarded[1]
    assert plain.shape == mirrored.shape == (B, T, 1, 192)
    for b in range(B):
        for t in range(T):
            ref = torch.nn.functional.avg_pool2d(clips[b, t, :1][None], 4).flatten()
            ref_flip = torch.nn.functional.avg_pool2d(clips[b, t, :1].flip(-1)[None], 4).flatten()
            torch.testing.assert_close(plain[b, t, 0], ref)
            torch.testing.assert_close(mirrored[b, t, 0], ref_flip)
    # the mean of the plain prediction and the flipped-back mirrored prediction
    h_plain = PoolingModel(gain).forward_tokens(plain)["heatmaps"]
    h_mirror = PoolingModel(gain).forward_tokens(mirrored)["heatmaps"]
    expected = 0.5 * (h_plain + _reference_flip_back(h_mirror))
    torch.testing.assert_close(heatmaps, expected)
    assert heatmaps.dtype == torch.float32 and heatmaps.shape == (B, NUM_JOINTS, 16, 12)
    torch.testing.assert_close(out["heatmaps"], h_plain)  # the un-flipped pass's output dict
    # without the flip test: one pass of the originals only
    model2 = PoolingModel(gain)
    h2, _ = predict_clips(model2, clips, flip_test=False)
    assert model2.encoded[0].shape[0] == B * T and len(model2.forwarded) == 1
    torch.testing.assert_close(h2, h_plain)


def test_predict_clips_flip_test_of_an_equivariant_model_changes_nothing() -> None:
    g = torch.Generator().manual_seed(1)
    clips = torch.randn(3, 1, 3, 64, 48, generator=g)
    model = PoolingModel(torch.ones(NUM_JOINTS))  # same map for every joint: flip-equivariant
    with_flip, _ = predict_clips(model, clips, flip_test=True)
    without, _ = predict_clips(PoolingModel(torch.ones(NUM_JOINTS)), clips, flip_test=False)
    torch.testing.assert_close(with_flip, without, rtol=0, atol=1e-6)


# --- run_test with an oracle ---------------------------------------------------------------------------


def _key(clip: torch.Tensor) -> str:
    return hashlib.sha1(clip.contiguous().numpy().tobytes()).hexdigest()


class OracleModel:
    """Returns each clip's own target heatmaps (found by the clip's pixels): a perfect model."""

    def __init__(self, dataset) -> None:
        self.table = {}
        for i in range(len(dataset)):
            item = dataset[i]
            self.table[_key(item["clip"])] = item["target"]
        assert len(self.table) == len(dataset)  # every clip is distinct
        self.shape = tuple(dataset[0]["clip"].shape[1:])
        self.calls = 0

    def eval(self) -> OracleModel:
        return self

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.flatten(1)[:, None, :]

    def forward_tokens(self, tokens: torch.Tensor) -> dict:
        self.calls += 1
        B, T = tokens.shape[:2]
        clips = tokens.reshape(B, T, *self.shape)
        return {"heatmaps": torch.stack([self.table[_key(c)] for c in clips])}


def _data_config(root: Path, **kw) -> DataConfig:
    return DataConfig(root=str(root), val="annotations/val", crop=CROP, workers=0, **kw)


def test_run_test_oracle_scores_100(toy_root: Path, tmp_path: Path) -> None:
    clip = ClipConfig(num_frames=3)
    data = _data_config(toy_root)
    test = EngineTestConfig(flip_test=False, boxes="gt", workers=0, batch_size=3)
    ds = _val_dataset(toy_root, clip)
    assert len(ds) == 2 * 4 * 2
    model = OracleModel(ds)
    out = tmp_path / "test"
    report = run_test(model, data, clip, test, out, torch.device("cpu"), None)
    assert model.calls == 6  # ceil(16 / 3) batches
    assert report["boxes"] == "gt"
    assert report["all"]["Total"] == 100.0
    for name in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"):
        assert report["all"][name] == 100.0
    assert report["hard"] is None  # the toy data has no hard-case labels
    assert not (out / "gt_hard").exists()
    gt_names = sorted(p.name for p in (toy_root / "annotations" / "val").glob("*.json"))
    assert sorted(p.name for p in (out / "predictions").iterdir()) == gt_names
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["all"]["Total"] == 100.0 and on_disk["boxes"] == "gt"
    md = (out / "report.md").read_text()
    assert "gt boxes" in md and "100.0" in md and "Hard frames" not in md
    # every GT person predicted once (GT boxes, NMS keeps both distant people)
    pred = json.loads((out / "predictions" / gt_names[0]).read_text())
    assert len(pred["annotations"]) == 4 * 2


def test_run_test_wrong_model_scores_below_100(toy_root: Path, tmp_path: Path) -> None:
    """The oracle's 100 is not a given: shifting every heatmap by 2 heatmap pixels costs mAP."""
    clip = ClipConfig(num_frames=1)
    ds = _val_dataset(toy_root, clip)
    model = OracleModel(ds)
    model.table = {k: torch.roll(v, shifts=2, dims=-1) for k, v in model.table.items()}
    test = EngineTestConfig(flip_test=False, boxes="gt", workers=0, batch_size=8)
    report = run_test(model, _data_config(toy_root), clip, test, tmp_path, torch.device("cpu"), None)
    assert report["all"]["Total"] < 90.0


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(
        root, SynthConfig(videos=2, frames=8, people=(1, 2), size=(160, 96), hard_ratio=1.0), progress=False
    )
    return root


def test_run_test_reports_hard_frames_on_synth(synth_root: Path, tmp_path: Path) -> None:
    clip = ClipConfig(num_frames=1)
    data = _data_config(synth_root)
    ds = _val_dataset(synth_root, clip)
    assert any(s.hard for s in ds.samples)
    test = EngineTestConfig(flip_test=False, boxes="gt", workers=0, batch_size=8)
    report = run_test(OracleModel(ds), data, clip, test, tmp_path, torch.device("cpu"), None)
    assert report["hard"] is not None
    assert set(report["hard"]) >= {"Head", "Ankle", "Total"}
    assert report["all"]["Total"] == 100.0 and report["hard"]["Total"] == 100.0
    assert (tmp_path / "gt_hard").is_dir()
    md = (tmp_path / "report.md").read_text()
    assert "Hard frames only" in md
    assert json.loads((tmp_path / "report.json").read_text())["hard"]["Total"] == 100.0


# --- hard-frame subsets --------------------------------------------------------------------------------


def _gt(frames_people: dict[int, list[dict]]) -> dict:
    images = [{"id": 100 + f, "file_name": f"images/val/v/{f:06d}.jpg"} for f in range(4)]
    anns = [
        {"image_id": 100 + f, "id": 1000 + 10 * f + k, **a}
        for f, ps in frames_people.items()
        for k, a in enumerate(ps)
    ]
    return {"images": images, "annotations": anns, "categories": []}


def test_frame_subset_keeps_only_frames_with_a_hard_person() -> None:
    gt = _gt(
        {
            0: [{"hard": ["occlusion"]}, {"hard": []}],  # one hard person: the frame keeps both
            1: [{"hard": []}, {}],  # nobody hard: the frame loses its people
            2: [{"hard": ["blur", "dark"]}],
        }
    )
    sub, kept = frame_subset(gt, lambda a: bool(a.get("hard")))
    assert kept == 2
    assert [a["id"] for a in sub["annotations"]] == [1000, 1001, 1020]
    assert sub["images"] == gt["images"]  # frames stay, only their people go
    assert len(gt["annotations"]) == 5  # the input is not modified


def test_write_frame_subset(tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / "a.json").write_text(json.dumps(_gt({0: [{"hard": ["blur"]}], 1: [{"hard": []}]})))
    (gt_dir / "b.json").write_text(json.dumps(_gt({0: [{}], 2: [{}]})))  # no hard label at all
    out = tmp_path / "hard"
    assert write_frame_subset(gt_dir, out, lambda a: bool(a.get("hard")))
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]
    a = json.loads((out / "a.json").read_text())
    assert [x["image_id"] for x in a["annotations"]] == [100]
    b = json.loads((out / "b.json").read_text())
    assert b["annotations"] == [] and len(b["images"]) == 4


def test_write_frame_subset_without_hard_labels_writes_nothing(tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / "a.json").write_text(json.dumps(_gt({0: [{}], 1: [{"hard": []}]})))
    out = tmp_path / "hard"
    assert write_frame_subset(gt_dir, out, lambda a: bool(a.get("hard"))) is False
    assert not out.exists()


def test_write_frame_subset_pt17_annolist_is_not_subset(tmp_path: Path) -> None:
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    (gt_dir / "a.json").write_text(json.dumps({"annolist": [{"image": [{"name": "x.jpg"}], "annorect": []}]}))
    out = tmp_path / "hard"
    assert write_frame_subset(gt_dir, out, lambda a: True) is False
    assert not out.exists()


# --- TCIS keypoint recall ------------------------------------------------------------------------------


class ImportanceModel:
    """``importance`` = sign at the tokens holding the clip's GT keypoints (keyframe, or ``frame``)."""

    def __init__(self, dataset, sign: float = 1.0, frame: int | None = None) -> None:
        W, H = dataset.crop.image_size
        self.grid = (H // 16, W // 16)
        Hp, Wp = self.grid
        T = dataset.clip.num_frames
        self.table = {}
        for i in range(len(dataset)):
            item = dataset[i]
            m = np.vstack([item["meta"]["crop_to_image"].numpy(), [0.0, 0.0, 1.0]])
            to_crop = np.linalg.inv(m)
            kps = item["meta"]["keypoints"].numpy()
            xy = kps[:, :2] @ to_crop[:2, :2].T + to_crop[:2, 2]
            imp = torch.zeros(T, Hp, Wp)
            for (x, y), v in zip(xy, kps[:, 2], strict=True):
                if v > 0:
                    col = min(Wp - 1, max(0, int(np.floor((x + 0.5) * Wp / W))))
                    row = min(Hp - 1, max(0, int(np.floor((y + 0.5) * Hp / H))))
                    imp[T // 2 if frame is None else frame, row, col] = sign
            self.table[_key(item["clip"])] = imp

    def eval(self) -> ImportanceModel:
        return self

    def __call__(self, clips: torch.Tensor) -> dict:
        return {"importance": torch.stack([self.table[_key(c)] for c in clips])}


def test_tcis_keypoint_recall_with_known_importance(toy_root: Path) -> None:
    ds = _val_dataset(toy_root, ClipConfig(num_frames=3))
    good = tcis_keypoint_recall(ImportanceModel(ds), ds, keep_ratio=0.5, batch_size=5)
    assert good["recall"] == 1.0
    assert good["tokens"] == 3 * 4 * 3 and good["tokens_kept"] == 18 and good["keep_ratio"] == 0.5
    assert good["keypoints"] == len(ds) * 15  # 15 annotated joints (no ears), all inside the crop
    bad = tcis_keypoint_recall(ImportanceModel(ds, sign=-1.0), ds, keep_ratio=0.5, batch_size=5)
    assert bad["recall"] == 0.0
    # the keypoints are in the keyframe: importance on the first frame's same cells misses them
    wrong_frame = tcis_keypoint_recall(ImportanceModel(ds, frame=0), ds, keep_ratio=0.25, batch_size=16)
    assert wrong_frame["recall"] < 0.25
    few = tcis_keypoint_recall(ImportanceModel(ds), ds, keep_ratio=0.5, max_samples=3)
    assert few["keypoints"] == 3 * 15


def test_tcis_keypoint_recall_needs_importance(toy_root: Path) -> None:
    ds = _val_dataset(toy_root, ClipConfig(num_frames=1))

    class NoImportance:
        def eval(self):
            return self

        def __call__(self, clips):
            return {"heatmaps": torch.zeros(len(clips), NUM_JOINTS, 16, 12)}

    with pytest.raises(ValueError, match="single-frame"):
        tcis_keypoint_recall(NoImportance(), ds, keep_ratio=0.5)
