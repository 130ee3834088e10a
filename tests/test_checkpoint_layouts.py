"""Outside checkpoints in their real key layouts import exactly (``cmpose convert``, ``init_model``).

Each file is written from a reference implementation (tests/reference_vitpose.py) with random
weights, in the wrapper its source uses; the model cmpose builds from the ViT-B PoseTrack config
must then give the reference's heatmaps (backbone tokens for MAE) within 1e-4 in float32. The
files are ViT-B (C = 768, 12 heads, 256x192 crops, 16x12 tokens) with the depth reduced to 2
blocks to keep the tests fast: every key name and every per-block shape is the real one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_vitpose import IMG, ClassicHead, SimpleHead, TopDown, ViTPoseViT, mae_into_vitpose, randomize
from torch import Tensor

from cmpose.api import init_model
from cmpose.checkpoint import CheckpointError, map_vitpose_state_dict, read_metadata, read_state_dict
from cmpose.cli import main as cli_main

DEPTH = 2
CONFIG = "posetrack18_vitb"
BASE = [f"model.backbone.depth={DEPTH}"]
SINGLE = [*BASE, "stages.0.kind=single"]  # the model is backbone + head: the reference's forward
SIMPLE = ["model.head.kind=simple"]
# mmpretrain VisionTransformer / mmpose 1.x names for ViTPose's (ViTPose name -> mmpose 1.x name)
MMPOSE_NAMES = (
    (".norm1.", ".ln1."),
    (".norm2.", ".ln2."),
    (".mlp.fc1.", ".ffn.layers.0.0."),
    (".mlp.fc2.", ".ffn.layers.1."),
    ("backbone.blocks.", "backbone.layers."),
    ("backbone.patch_embed.proj.", "backbone.patch_embed.projection."),
    ("backbone.last_norm.", "backbone.ln1."),
    ("keypoint_head.", "head."),
)


def image() -> Tensor:
    return torch.randn(1, 3, *IMG, generator=torch.Generator().manual_seed(11))


def heatmaps(model: torch.nn.Module) -> Tensor:
    with torch.no_grad():
        return model(image()[:, None])["heatmaps"]  # a one-frame clip (B, 1, 3, H, W)


def assert_matches(actual: Tensor, expected: Tensor) -> None:
    assert actual.shape == expected.shape and actual.dtype == torch.float32
    assert expected.std() > 0.1  # outputs of unit scale: 1e-4 is a tight tolerance
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def topdown(head: str, seed: int, joints: int = 17, extra: tuple[int, ...] = (), **vit) -> TopDown:
    make = ClassicHead if head == "classic" else SimpleHead
    heads = [make(768, j) for j in extra]
    return randomize(TopDown(ViTPoseViT(DEPTH, **vit), make(768, joints), heads), seed)


def convert(tmp_path: Path, src: Path, *args: str) -> tuple[int, Path]:
    out = tmp_path / f"{src.stem}.safetensors"
    return cli_main.main(["convert", str(src), str(out), *args]), out


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def head_overrides(head: str) -> list[str]:
    return SIMPLE if head == "simple" else []


def assert_holds(model: torch.nn.Module, path: Path) -> None:
    """Every tensor of a converted file is the one the model imported from the original file:
    the same weights, so the same heatmaps."""
    own = model.state_dict()
    for k, v in read_state_dict(path).items():
        assert torch.equal(own[k], v), k


def mmengine_meta() -> dict:
    """What mmengine keeps beside the weights: numpy arrays and scalars among plain values."""
    return {
        "dataset_meta": {
            "dataset_name": "coco",
            "num_keypoints": 17,
            "sigmas": np.linspace(0.025, 0.107, 17, dtype=np.float32),
            "joint_weights": np.ones(17, dtype=np.float64),
            "flip_indices": [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15],
        },
        "mmengine_version": "0.7.2",
        "epoch": 210,
        "seed": np.int64(21),
        "best_score": np.float64(0.757),
    }


@pytest.fixture(scope="module")
def refs() -> dict[str, TopDown]:
    """ViTPose-B with each head, random weights (built once: they are the slow part)."""
    return {"classic": topdown("classic", seed=1), "simple": topdown("simple", seed=2)}


@pytest.mark.parametrize("head", ["classic", "simple"])
def test_vitpose_b_heads_import_exactly(tmp_path: Path, refs: dict[str, TopDown], head: str) -> None:
    ref = refs[head]
    src = tmp_path / f"vitpose-b-{head}.pth"
    torch.save({"meta": {"mmcv_version": "1.3.9"}, "state_dict": ref.state_dict()}, src)
    with torch.no_grad():
        expected = ref(image())

    model = init_model(CONFIG, src, overrides=SINGLE + head_overrides(head))
    assert_matches(heatmaps(model), expected)
    code, out = convert(tmp_path, src, *sets(SINGLE + head_overrides(head)))
    assert code == 0 and read_metadata(out)["source_format"] == "vitpose"
    assert_holds(model, out)


def test_coco_aic_mpii_drops_class_token_and_extra_heads(tmp_path: Path, refs: dict[str, TopDown]) -> None:
    sd = dict(refs["classic"].state_dict())
    g = torch.Generator().manual_seed(3)
    sd["backbone.cls_token"] = torch.randn(1, 1, 768, generator=g)
    for i, joints in enumerate((14, 16)):  # the AIC and MPII heads beside COCO's
        extra = randomize(ClassicHead(768, joints), seed=4 + i).state_dict()
        sd.update({f"associate_keypoint_heads.{i}.{k}": v for k, v in extra.items()})
    assert sum(k.startswith("associate_keypoint_heads.") for k in sd) == 28  # as in the real file
    src = tmp_path / "vitpose_base_coco_aic_mpii.pth"
    torch.save({"state_dict": sd}, src)

    _, notes = map_vitpose_state_dict(read_state_dict(src), (16, 12))
    assert "backbone.cls_token" in notes.dropped
    assert sum(k.startswith("associate_keypoint_heads.") for k in notes.dropped) == 28
    # the recipe's first step: run.init into the first stage (mcl) of the PoseTrack config
    model = init_model(CONFIG, src, overrides=BASE)
    own = model.state_dict()
    for k, v in refs["classic"].state_dict().items():
        if k != "backbone.pos_embed":
            assert torch.equal(own[k], v), k
    pos = sd["backbone.pos_embed"]
    torch.testing.assert_close(own["backbone.pos_embed"], pos[:, 1:] + pos[:, :1], atol=0, rtol=0)
    code, out = convert(tmp_path, src, *sets(BASE))
    assert code == 0 and "backbone.cls_token" not in read_state_dict(out)
    assert_holds(model, out)


@pytest.mark.parametrize(("head", "class_token"), [("classic", True), ("simple", False)])
def test_mmpose1x_files_import_exactly(
    tmp_path: Path, refs: dict[str, TopDown], head: str, class_token: bool
) -> None:
    ref = refs[head]
    sd = {}
    for k, v in ref.state_dict().items():
        for ours, theirs in MMPOSE_NAMES:
            k = k.replace(ours, theirs)
        sd[k] = v.clone()
    # mmpose 1.x builds ViTPose with with_cls_token=False: pos_embed holds the patches only. A
    # file that carries a class token and its row loses both in mmpretrain's loader, so the
    # original forward adds pos[:, 1:] alone: the reference's, once its first row is 0.
    if class_token:
        sd["backbone.cls_token"] = torch.randn(1, 1, 768, generator=torch.Generator().manual_seed(5))
    else:
        sd["backbone.pos_embed"] = sd["backbone.pos_embed"][:, 1:]
    saved = ref.backbone.pos_embed.detach().clone()
    with torch.no_grad():
        ref.backbone.pos_embed[:, 0] = 0
        expected = ref(image())
        ref.backbone.pos_embed.copy_(saved)
    src = tmp_path / f"td-hm_ViTPose-base-{head}_mmpose1x.pth"
    torch.save({"meta": mmengine_meta(), "state_dict": sd}, src)
    with pytest.raises(Exception, match="weights_only"):  # what the allow-list is for
        torch.load(src, weights_only=True)

    overrides = SINGLE + head_overrides(head)
    code, out = convert(tmp_path, src, *sets(overrides))
    assert code == 0
    # through the converted file: init_model honours its metadata (mmpretrain provides backbone
    # and head) and the heatmaps are the original's
    model = init_model(CONFIG, out, overrides=overrides)
    assert_matches(heatmaps(model), expected)
    assert_holds(init_model(CONFIG, src, overrides=overrides), out)


def test_numpy1_names_in_mmengine_meta_load(tmp_path: Path) -> None:
    """numpy 1.x pickles name numpy.core.multiarray, numpy 2.x numpy._core.multiarray: both load."""
    sd = {"backbone.blocks.0.norm1.weight": torch.ones(4), "backbone.pos_embed": torch.zeros(1, 13, 4)}
    legacy = tmp_path / "legacy.pth"  # the pre-zip format: one plain pickle stream, names as text
    torch.save({"meta": mmengine_meta(), "state_dict": sd}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    other = b"numpy.core.multiarray\n" if b"numpy._core.multiarray\n" in data else b"numpy._core.multiarray\n"
    swapped = data.replace(b"numpy._core.multiarray\n", other).replace(b"numpy.core.multiarray\n", other)
    assert swapped != data
    for name, content in (("own.pth", data), ("other_numpy.pth", swapped)):
        (tmp_path / name).write_bytes(content)
        assert read_state_dict(tmp_path / name).keys() == sd.keys()


def test_code_in_a_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return os.system, (f"touch {marker}",)

    src = tmp_path / "evil_mmpose1x.pth"
    torch.save({"meta": {**mmengine_meta(), "hook": Payload()}, "state_dict": {"w": torch.ones(1)}}, src)
    with pytest.raises(CheckpointError, match=r"refused by torch.load\(weights_only=True\).*system"):
        read_state_dict(src)
    assert convert(tmp_path, src, "--config", "none")[0] == 2
    assert not marker.exists()


def mae_file(seed: int) -> dict[str, Tensor]:
    """An MAE ViT-B encoder (timm names: 14x14 grid at 224 plus a class row, cls_token, norm)."""
    vit = randomize(ViTPoseViT(DEPTH), seed)
    g = torch.Generator().manual_seed(seed)
    mae = {k: v for k, v in vit.state_dict().items() if not k.startswith(("pos_embed", "last_norm."))}
    mae["pos_embed"] = torch.randn(1, 1 + 14 * 14, 768, generator=g) * 0.5
    mae["cls_token"] = torch.randn(1, 1, 768, generator=g)
    mae["norm.weight"], mae["norm.bias"] = torch.rand(768, generator=g) + 0.5, torch.randn(768, generator=g)
    return mae


def test_mae_imports_and_its_conversion_loads_wherever_it_does(tmp_path: Path) -> None:
    mae = mae_file(seed=4)
    src = tmp_path / "mae_pretrain_vit_base.pth"
    torch.save({"model": mae}, src)
    with torch.no_grad():
        expected = mae_into_vitpose(mae, DEPTH).tokens(image())

    def tokens(path: Path) -> Tensor:
        with torch.no_grad():
            return init_model(CONFIG, path, overrides=SINGLE).backbone(image())

    assert_matches(tokens(src), expected)
    # without a model (so without its grid): the 14x14 embedding, resampled when loaded; no
    # backbone.last_norm (ViTPose starts it from its init), and not required when loading
    code, plain = convert(tmp_path, src, "--config", "none")
    assert code == 0 and read_state_dict(plain)["backbone.pos_embed"].shape == (1, 196, 768)
    assert read_metadata(plain)["lacks"] == "backbone.last_norm."
    model = init_model(CONFIG, plain, overrides=SINGLE)
    with torch.no_grad():
        assert_matches(model.backbone(image()), expected)
    # against the config's model: resampled to its 16x12 grid, the same tensors
    code, fitted = convert(tmp_path, src, "--config", CONFIG, *sets(SINGLE))
    assert code == 0 and read_state_dict(fitted)["backbone.pos_embed"].shape == (1, 192, 768)
    assert_holds(model, fitted)


def test_vitpose_plus_merges_the_chosen_expert(tmp_path: Path) -> None:
    # ViTPose+-B: 6 experts of 192 channels; keypoint_head is COCO's (expert 0), five more heads
    ref = topdown("classic", seed=6, extra=(14, 16, 17, 17, 133), num_experts=6, part=192)
    sd = ref.state_dict()
    assert sd["backbone.blocks.0.mlp.fc2.weight"].shape == (768 - 192, 3072)
    assert sd["backbone.blocks.0.mlp.experts.5.weight"].shape == (192, 3072)
    src = tmp_path / "vitpose+_base.pth"
    torch.save({"state_dict": sd}, src)
    with torch.no_grad():
        expected = ref(image())  # dataset 0 (COCO): expert 0 and keypoint_head
    model = init_model(CONFIG, src, overrides=SINGLE)
    assert_matches(heatmaps(model), expected)

    _, notes = map_vitpose_state_dict(read_state_dict(src), (16, 12), expert=1)
    assert any("merged expert 1 of 6" in m for m in notes.messages)
    with pytest.raises(CheckpointError, match=r"no expert 6 \(it has \[0, 1, 2, 3, 4, 5\]\)"):
        map_vitpose_state_dict(read_state_dict(src), (16, 12), expert=6)
    code, out = convert(tmp_path, src, *sets(SINGLE), "--expert", "0")
    assert code == 0
    assert_holds(model, out)


def test_convert_names_each_key_that_cannot_load(
    tmp_path: Path, refs: dict[str, TopDown], caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "vitpose-b-simple.pth"
    torch.save({"state_dict": refs["simple"].state_dict()}, src)
    # the default config: ViT-B with 12 blocks and the classic head
    code, out = convert(tmp_path, src)
    assert code == 2 and not out.exists()
    text = caplog.text
    assert "keypoint_head.final_layer.weight: checkpoint (17, 768, 3, 3), model (17, 256, 1, 1)" in text
    for key in ("keypoint_head.deconv_layers.0.weight", "backbone.blocks.11.mlp.fc2.bias"):
        assert f"{key}: missing from the checkpoint" in text
    assert "backbone.blocks.1.mlp.fc2.bias: missing" not in text  # only what cannot load
    assert "try --set model.head.kind=simple" in text
    # a file with a key the model has no place for
    sd = {**refs["simple"].state_dict(), "backbone.blocks.0.attn.rel_pos": torch.zeros(3)}
    torch.save({"state_dict": sd}, src)
    caplog.clear()
    assert convert(tmp_path, src, *sets(SINGLE + SIMPLE))[0] == 2
    assert "backbone.blocks.0.attn.rel_pos: unexpected" in caplog.text


@pytest.mark.parametrize("head", ["classic", "simple"])
def test_stage1_of_the_posetrack_config_starts_at_vitpose(
    tmp_path: Path, refs: dict[str, TopDown], head: str
) -> None:
    """The config's CM-Pose stage 1 (T = 3, temporal encoder, auxiliary branches) initialised from a
    ViTPose file predicts, before any step, ViTPose's single-frame heatmaps of the keyframe: the
    encoder's contribution is residual and starts at zero (cmpose.models.encoder)."""
    ref = refs[head]
    src = tmp_path / f"vitpose-b-{head}.pth"
    torch.save({"state_dict": ref.state_dict()}, src)
    model = init_model(CONFIG, src, stage="mcl", overrides=BASE + head_overrides(head))
    assert model.encoder is not None and model.num_frames == 3
    g = torch.Generator().manual_seed(12)
    clip = torch.stack([torch.randn(3, *IMG, generator=g), image()[0], torch.randn(3, *IMG, generator=g)])
    with torch.no_grad():
        expected = ref(image())
        assert_matches(model(clip[None])["heatmaps"], expected)
