"""Property tests (hypothesis) of the readers on generated malformed input (issue 18, item 7): a
valid PoseTrack17 / 18 / 21 annotation, detections file or prediction, mutated at random places
(wrong types, NaN / Infinity, huge numbers, empty and nested lists, missing keys, repeated
items), gives a result or a cmpose error (``CmposeError``), never another exception.

Each property runs ``MAX_EXAMPLES`` generated files (the counts in docs/reliability.md)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cmpose.data.detections import load_detections
from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.errors import CmposeError
from cmpose.eval.posetrack import evaluate
from cmpose.infer.detect import FileBoxes
from cmpose.keypoints import PT17_NAMES, PT18_NAMES

MAX_EXAMPLES = 100
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces locally
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- valid documents ---


def _kps(shift: float, v: int = 1) -> list[float]:
    return [x for j in range(len(PT18_NAMES)) for x in (20.0 + 3 * j + shift, 30.0 + 2 * j, v)]


def pt18_doc(v: int = 1, person_key: str = "track_id") -> dict[str, Any]:
    """Two labelled frames of one video, two people each (PoseTrack18; v = 2 is PoseTrack21)."""
    images = [
        {
            "id": 10000010000 + f,
            "file_name": f"images/val/000001_mpii_test/{f:06d}.jpg",
            "nframes": 2,
            "is_labeled": True,
            "width": 320,
            "height": 240,
            "ignore_regions_x": [[0, 10, 10]],
            "ignore_regions_y": [[0, 0, 10]],
        }
        for f in range(2)
    ]
    anns = [
        {
            "image_id": 10000010000 + f,
            "id": 100 * f + p,
            person_key: p,
            "track_id": p,
            "category_id": 1,
            "keypoints": _kps(40.0 * p + f, v),
            "bbox": [10.0 + 40 * p, 20.0, 60.0, 90.0],
            "bbox_head": [20.0 + 40 * p, 20.0, 12.0, 14.0],
            "scores": [0.9] * len(PT18_NAMES),
        }
        for f in range(2)
        for p in range(2)
    ]
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(PT18_NAMES)}]
    return {"images": images, "annotations": anns, "categories": cats}


def pt17_doc() -> dict[str, Any]:
    """The same two frames in PoseTrack17 ``annolist`` form (values wrapped in lists)."""
    annolist = []
    for f in range(2):
        rects = []
        for p in range(2):
            points = [
                {"id": [i], "x": [20.0 + 3 * i + 40 * p], "y": [30.0 + 2 * i], "is_visible": [1]}
                for i in range(len(PT17_NAMES))
            ]
            rects.append(
                {"x1": [20.0 + 40 * p], "y1": [20.0], "x2": [32.0 + 40 * p], "y2": [34.0], "track_id": [p],
                 "score": [0.9], "annopoints": [{"point": points}]}
            )  # fmt: skip
        annolist.append(
            {"image": [{"name": f"images/bonn/000001_bonn/{f + 1:08d}.jpg"}], "imgnum": [f + 1],
             "is_labeled": [1], "annorect": rects,
             "ignore_regions": [{"point": [{"x": [0]}, {"x": [10], "y": [0]}, {"x": [10], "y": [10]}]}]}
        )  # fmt: skip
    return {"annolist": annolist}


def detections_doc() -> list[dict[str, Any]]:
    return [
        {
            "image_id": 10000010000 + f,
            "category_id": 1,
            "bbox": [10.0 + 40 * p, 20.0, 60.0, 90.0],
            "score": 0.9,
        }
        for f in range(2)
        for p in range(2)
    ]


# --- mutations ---

HOSTILE_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(10**300, 10**320)  # beyond float range
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1.0, 0, ""])
    | st.text(max_size=6)
    | st.sampled_from(["../../etc/passwd", "/abs/x.jpg", "images\\..\\..\\x.jpg"])
)
HOSTILE = st.recursive(
    HOSTILE_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with 1 to 3 random edits: replace a value, delete it, repeat it in its list, or
    wrap it in lists."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "delete", "repeat", "wrap"]))
        if not path:
            doc = draw(HOSTILE) if action == "replace" else [doc] if action == "wrap" else doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if action == "replace":
            parent[key] = draw(HOSTILE)
        elif action == "delete":
            del parent[key]
        elif action == "repeat" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif action == "wrap":
            parent[key] = [[parent[key]]] if draw(st.booleans()) else [parent[key]]
    return doc


def _write(folder: Path, name: str, obj: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps(obj))  # NaN / Infinity become JSON's non-standard tokens, as in the wild
    return path


def _only_cmpose_errors(fn, *args, **kwargs) -> Any:  # noqa: ANN001
    try:
        return fn(*args, **kwargs)
    except CmposeError:
        return None


# --- the properties ---


@FUZZ
@given(doc=mutated(pt18_doc()), strict=st.booleans())
def test_pt18_reader_gives_only_cmpose_errors(doc: Any, strict: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "000001_mpii_test.json", doc)
        data = _only_cmpose_errors(read_annotations, path, Path(tmp), Problems(strict=strict))
        if data is not None:  # what was read stays inside the dataset root
            assert all(Path(tmp) in p.image_path.parents for p in data.people)


@FUZZ
@given(doc=mutated(pt18_doc(v=2, person_key="person_id")), strict=st.booleans())
def test_pt21_reader_gives_only_cmpose_errors(doc: Any, strict: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _only_cmpose_errors(
            read_annotations, _write(Path(tmp), "v.json", doc), Path(tmp), Problems(strict=strict)
        )


@FUZZ
@given(doc=mutated(pt17_doc()), strict=st.booleans(), layout=st.sampled_from(["original", "renamed"]))
def test_pt17_reader_gives_only_cmpose_errors(doc: Any, strict: bool, layout: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "000001_bonn.json", doc)
        _only_cmpose_errors(read_annotations, path, Path(tmp), Problems(strict=strict), pt17_layout=layout)


@FUZZ
@given(doc=mutated(detections_doc()))
@example(doc=[{"image_id": [1], "bbox": [1, 2, 3, 4], "score": 0.9}])  # found by the generator: TypeError
def test_detections_readers_give_only_cmpose_errors(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gt = read_annotations(_write(Path(tmp), "gt.json", pt18_doc()), Path(tmp))
        path = _write(Path(tmp), "dets.json", doc)
        _only_cmpose_errors(load_detections, path, gt, 0.2, Problems())
        _only_cmpose_errors(FileBoxes, path, "000001_mpii_test", None, 0.2)


@FUZZ
@given(doc=mutated(pt18_doc()), gt_side=st.booleans())
@example(doc=dict(pt18_doc(), annotations=True), gt_side=True)  # found by the generator: TypeError
@example(doc=dict(pt18_doc(), annotations=[]), gt_side=True)  # found by the generator: ValueError
def test_evaluate_gives_only_cmpose_errors(doc: Any, gt_side: bool) -> None:
    """A mutated GT against a valid prediction, or the other way round."""
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pred_dir = Path(tmp) / "gt", Path(tmp) / "pred"
        gt_dir.mkdir(), pred_dir.mkdir()
        _write(gt_dir, "000001_mpii_test.json", doc if gt_side else pt18_doc())
        _write(pred_dir, "000001_mpii_test.json", pt18_doc() if gt_side else doc)
        report = _only_cmpose_errors(evaluate, gt_dir, pred_dir)
        if report is not None:
            total = report["Total"]
            assert total != total or 0.0 <= total <= 100.0  # NaN only when nothing is scored


def test_the_valid_documents_are_valid(tmp_path: Path) -> None:
    """The unmutated documents read and score cleanly: the mutations, not the bases, cause refusals."""
    data = read_annotations(_write(tmp_path, "a.json", pt18_doc()), tmp_path, Problems(strict=True))
    assert len(data.people) == 4
    data21 = read_annotations(
        _write(tmp_path, "b.json", pt18_doc(2, "person_id")), tmp_path, Problems(strict=True)
    )
    assert len(data21.people) == 4
    (tmp_path / "p17").mkdir()
    data17 = read_annotations(_write(tmp_path / "p17", "c.json", pt17_doc()), tmp_path, Problems(strict=True))
    assert len(data17.people) == 4
    assert (
        len(load_detections(_write(tmp_path, "d.json", detections_doc()), data, 0.2, Problems(strict=True)))
        == 4
    )
    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    _write(tmp_path / "gt", "000001_mpii_test.json", pt18_doc())
    _write(tmp_path / "pred", "000001_mpii_test.json", pt18_doc())
    report = evaluate(tmp_path / "gt", tmp_path / "pred")
    assert report["Total"] == 100.0
