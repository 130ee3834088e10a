"""Checkpoint reading, format mapping and strict loading (cmpose.checkpoint, cmpose convert).

A stand-in for CMPose (ViT backbone + HeatmapHead + one CM-Pose-only module) is rewritten into
the official ViTPose, MAE and mmpretrain layouts; loading those back must give the same weights
and outputs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cmpose.checkpoint import (
    CheckpointError,
    detect_format,
    infer_grid,
    load_into,
    load_pretrained,
    map_vitpose_state_dict,
    read_state_dict,
    resample_pos_embed,
)
from cmpose.cli import convert
from cmpose.errors import CmposeError
from cmpose.models.heads import HeatmapHead
from cmpose.models.vit import ViT

IMG = (64, 48)  # -> 4x3 token grid with ViTPose's patch 16 / padding 2
GRID = (4, 3)
C = 32


class StandIn(nn.Module):
    """CMPose's state-dict layout: backbone.*, keypoint_head.*, and a CM-Pose-only module."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ViT(img_size=IMG, embed_dim=C, depth=2, num_heads=2)
        self.keypoint_head = HeatmapHead(C, 17, (16, 16))
        self.encoder = nn.Linear(C, C)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.backbone(x)  # (B, N, C)
        return self.keypoint_head(tokens.transpose(1, 2).reshape(x.shape[0], C, *self.backbone.grid))


def make_model(seed: int) -> StandIn:
    torch.manual_seed(seed)
    model = StandIn()
    with torch.no_grad():  # the head's init (std 0.001, unit BN stats) would hide its weights in outputs
        for name, t in model.keypoint_head.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_(0.0, 0.3)
        model.backbone.pos_embed.normal_()
    return model.eval()


def image() -> Tensor:
    return torch.randn(2, 3, *IMG, generator=torch.Generator().manual_seed(7))


def vitpose_layout(model: StandIn) -> dict[str, Tensor]:
    """Our weights in ViTPose's layout: pos_embed (1, 1+N, C) whose class slot is added to every patch."""
    sd = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith(("backbone.", "keypoint_head."))
    }
    slot = torch.randn(1, 1, C, generator=torch.Generator().manual_seed(3))
    sd["backbone.pos_embed"] = torch.cat([slot, sd["backbone.pos_embed"] - slot], dim=1)
    return sd


def mmpretrain_layout(model: StandIn) -> dict[str, Tensor]:
    """Our weights in mmpose 1.x names (mmpretrain VisionTransformer, with_cls_token=False)."""
    renames = [
        (r"\.blocks\.(\d+)\.norm1\.", r".layers.\1.ln1."),
        (r"\.blocks\.(\d+)\.norm2\.", r".layers.\1.ln2."),
        (r"\.blocks\.(\d+)\.mlp\.fc1\.", r".layers.\1.ffn.layers.0.0."),
        (r"\.blocks\.(\d+)\.mlp\.fc2\.", r".layers.\1.ffn.layers.1."),
        (r"\.blocks\.(\d+)\.attn\.", r".layers.\1.attn."),
        (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
        (r"^backbone\.last_norm\.", "backbone.ln1."),
        (r"^keypoint_head\.", "head."),
    ]
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("encoder."):
            continue
        for pattern, repl in renames:
            k = re.sub(pattern, repl, k)
        out[k] = v.clone()
    return out


def run_cli(argv: list[str]) -> int:
    """Through ``cmpose`` itself once ``convert`` is registered there, else the same way main() does."""
    from cmpose.cli import main as cli_main

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "convert" in sub.choices:
        return cli_main.main(argv)
    parser = argparse.ArgumentParser()
    convert.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CmposeError:
        return 2


def test_vitpose_checkpoint_loads_with_class_slot_folded(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    sd = vitpose_layout(src)
    # official files: {'meta': ..., 'state_dict': ...}, here also with a DDP 'module.' prefix
    ckpt = {
        "meta": {"epoch": 210, "mmcv_version": "1.3.9"},
        "state_dict": {f"module.{k}": v for k, v in sd.items()},
    }
    torch.save(ckpt, tmp_path / "vitpose.pth")
    assert detect_format(read_state_dict(tmp_path / "vitpose.pth")) == "vitpose"
    with torch.no_grad():
        expected = src(image())
        assert not torch.allclose(dst(image()), expected)
        report = load_pretrained(dst, tmp_path / "vitpose.pth")
        torch.testing.assert_close(dst(image()), expected)
        # the slot matters: dropping it instead of folding it changes the outputs
        dst.backbone.pos_embed.copy_(sd["backbone.pos_embed"][:, 1:])
        assert not torch.allclose(dst(image()), expected, atol=1e-4)
    assert report.missing == ["encoder.bias", "encoder.weight"]  # CM-Pose-only: allowed for ViTPose
    assert report.unexpected == [] and report.resampled == []
    assert "folded" in report.summary() and "encoder.* (2)" in report.summary()


def test_vitpose_head_drop_keeps_final_layer_init(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    torch.save({"state_dict": vitpose_layout(src)}, tmp_path / "vitpose.pth")
    before = {k: v.clone() for k, v in dst.keypoint_head.final_layer.state_dict().items()}
    report = load_pretrained(dst, tmp_path / "vitpose.pth", head="drop")
    for k, v in dst.keypoint_head.final_layer.state_dict().items():
        assert torch.equal(v, before[k])
    torch.testing.assert_close(
        dst.keypoint_head.deconv_layers[0].weight, src.keypoint_head.deconv_layers[0].weight
    )
    assert "keypoint_head.final_layer.weight" in report.missing


def test_mae_checkpoint_loads_into_backbone_with_resampled_pos_embed(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    g = torch.Generator().manual_seed(5)
    mae = {
        k.removeprefix("backbone."): v.clone()
        for k, v in src.state_dict().items()
        if k.startswith("backbone.") and not k.startswith(("backbone.pos_embed", "backbone.last_norm."))
    }
    mae["pos_embed"] = torch.randn(1, 1 + 14 * 14, C, generator=g)  # MAE at 224: 14x14 + class slot
    mae["cls_token"] = torch.randn(1, 1, C, generator=g)
    mae["norm.weight"], mae["norm.bias"] = torch.ones(C), torch.zeros(C)
    mae["head.weight"], mae["head.bias"] = torch.randn(1000, C, generator=g), torch.zeros(1000)
    torch.save({"model": mae}, tmp_path / "mae_pretrain.pth")
    head_before = {k: v.clone() for k, v in dst.keypoint_head.state_dict().items()}

    report = load_pretrained(dst, tmp_path / "mae_pretrain.pth")

    assert report.resampled == ["backbone.pos_embed"]
    assert report.unexpected == []
    assert {k.split(".")[0] for k in report.missing} == {"keypoint_head", "encoder", "backbone"}
    assert [k for k in report.missing if k.startswith("backbone.")] == [
        "backbone.last_norm.bias",
        "backbone.last_norm.weight",
    ]
    text = report.summary()
    assert "14x14 -> 4x3" in text and "cls_token" in text and "head.weight" in text and "norm.weight" in text
    pos = mae["pos_embed"]
    torch.testing.assert_close(
        dst.backbone.pos_embed, resample_pos_embed(pos[:, 1:] + pos[:, :1], (14, 14), GRID)
    )
    for k, v in dst.backbone.state_dict().items():
        if k not in ("pos_embed", "last_norm.weight", "last_norm.bias"):
            torch.testing.assert_close(v, src.backbone.state_dict()[k])
    for k, v in dst.keypoint_head.state_dict().items():
        assert torch.equal(v, head_before[k])


def test_mmpretrain_layout_loads_to_same_outputs(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    sd = mmpretrain_layout(src)
    assert detect_format(sd) == "mmpretrain"
    torch.save({"state_dict": sd}, tmp_path / "mmpose1.pth")
    load_pretrained(dst, tmp_path / "mmpose1.pth")
    with torch.no_grad():
        torch.testing.assert_close(dst(image()), src(image()))
    # with a class token mmpretrain's pos_embed has a slot; its loader drops it, and so do we
    pos = torch.randn(1, 13, C)
    out, notes = map_vitpose_state_dict(
        {**sd, "backbone.pos_embed": pos, "backbone.cls_token": pos[:, :1]}, GRID
    )
    assert torch.equal(out["backbone.pos_embed"], pos[:, 1:]) and "backbone.cls_token" in notes.dropped
    # an mmpretrain pretrain file (MAE: backbone + decoder neck, no pose head) loads into the backbone
    backbone = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    torch.save(
        {"state_dict": {**backbone, "neck.decoder_pred.weight": torch.ones(2)}}, tmp_path / "mae_mm.pth"
    )
    report = load_pretrained(make_model(2), tmp_path / "mae_mm.pth")
    assert {k.split(".")[0] for k in report.missing} == {"keypoint_head", "encoder"}


def test_resample_identity_and_linear_ramp() -> None:
    pos = torch.randn(1, 12, 8)
    assert resample_pos_embed(pos, GRID, GRID) is pos
    # A field linear in the (row, col) pixel centres stays close to that ramp sampled at the new
    # centres (align_corners=False). Not exact: PyTorch's bicubic kernel (Keys, a=-0.75) does not
    # reproduce linear functions, it wobbles by < 0.08 cell per unit slope.
    (Hs, Ws), (Hd, Wd) = (14, 14), (16, 12)  # MAE 224 -> ViTPose 256x192
    rows, cols = torch.meshgrid(torch.arange(float(Hs)), torch.arange(float(Ws)), indexing="ij")
    y = (torch.arange(Hd) + 0.5) * Hs / Hd - 0.5
    x = (torch.arange(Wd) + 0.5) * Ws / Wd - 0.5
    ys, xs = torch.meshgrid(y, x, indexing="ij")
    slopes = [(1.0, 0.0), (0.0, 1.0), (-1.0, 2.0)]
    field = torch.stack([a * rows + b * cols for a, b in slopes], dim=-1)  # (Hs, Ws, 3)
    out = resample_pos_embed(field.reshape(1, Hs * Ws, 3), (Hs, Ws), (Hd, Wd)).reshape(Hd, Wd, 3)
    for c, (a, b) in enumerate(slopes):
        error = out[..., c] - (a * ys + b * xs)
        assert error.abs().max() < 0.08 * (abs(a) + abs(b))
        assert abs(error.mean()) < 1e-5  # no drift: the wobble is symmetric
        for slope, step in ((a, out[1:, :, c] - out[:-1, :, c]), (b, out[:, 1:, c] - out[:, :-1, c])):
            assert (step * slope > 0).all() if slope else (step.abs() < 1e-4).all()  # still monotone


def test_infer_grid() -> None:
    assert infer_grid(196) == (14, 14)
    assert infer_grid(192) == (16, 12)
    assert infer_grid(432) == (24, 18)
    assert infer_grid(50, (10, 5)) == (10, 5)
    with pytest.raises(CheckpointError, match="source grid"):
        infer_grid(50)
    with pytest.raises(CheckpointError, match="does not hold 50"):
        infer_grid(50, (7, 7))


def test_detect_format_needs_grid_when_token_count_is_ambiguous() -> None:
    sd = {"backbone.blocks.0.norm1.weight": torch.ones(C), "backbone.pos_embed": torch.zeros(1, 49, C)}
    with pytest.raises(CheckpointError, match="--grid"):
        detect_format(sd)  # 49 = 7x7 (ours) or 1 + 8x6 (ViTPose)
    assert detect_format(sd, (7, 7)) == "cmpose"
    assert detect_format(sd, (8, 6)) == "vitpose"
    assert detect_format({**sd, "fte.weight": torch.ones(1)}) == "cmpose"  # our modules settle it
    vitpose_plus = {
        **sd,
        "backbone.pos_embed": torch.zeros(1, 13, C),
        "associate_keypoint_heads.0.w": torch.ones(1),
    }
    assert detect_format(vitpose_plus) == "vitpose"  # 13 = 1 + 4x3: the count wins over extra heads
    assert map_vitpose_state_dict(vitpose_plus, GRID)[1].dropped == ["associate_keypoint_heads.0.w"]
    with pytest.raises(CheckpointError, match="unknown checkpoint layout"):
        detect_format({"fc.weight": torch.ones(1)})


def test_shape_mismatch_names_key_and_both_shapes() -> None:
    sd = make_model(0).state_dict()
    sd["keypoint_head.final_layer.weight"] = torch.zeros(15, 16, 1, 1)
    message = "keypoint_head.final_layer.weight: checkpoint (15, 16, 1, 1), model (17, 16, 1, 1)"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_into(make_model(1), sd)


def test_strict_missing_and_unexpected() -> None:
    model, full = make_model(1), make_model(0).state_dict()
    sd = {k: v for k, v in full.items() if k != "encoder.weight"}
    with pytest.raises(CheckpointError, match="missing encoder.weight"):
        load_into(model, sd)
    assert load_into(model, sd, allow_missing=("encoder.",)).missing == ["encoder.weight"]
    assert load_into(model, sd, strict=False).missing == ["encoder.weight"]
    # stage 2 loads stage 1 strictly except its new modules (fte.); the rest must be present
    with pytest.raises(CheckpointError, match="missing encoder.weight"):
        load_into(model, sd, allow_missing=("fte.",))

    extra = {**full, "aux_mask.decoder.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match="unexpected aux_mask.decoder.weight"):
        load_into(model, extra)
    assert load_into(model, extra, ignore_unexpected=("aux_mask.",)).unexpected == ["aux_mask.decoder.weight"]

    with pytest.raises(CheckpointError, match=r"missing .* \(\d+ in all\)"):
        load_into(model, {"encoder.weight": full["encoder.weight"]})  # first 10 keys + the count
    no_counter = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert load_into(model, no_counter).loaded == len(no_counter)


def test_convert_round_trip_of_our_training_checkpoint(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    ckpt = {"model": src.state_dict(), "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "epoch": 3}
    torch.save(ckpt, tmp_path / "last.pth")
    out = tmp_path / "sub" / "weights.safetensors"
    argv = ["convert", str(tmp_path / "last.pth"), str(out), "--grid", "4x3", "--config", "none"]
    assert run_cli(argv) == 0
    assert [p.name for p in out.parent.iterdir()] == ["weights.safetensors"]  # no temporary left behind
    written = read_state_dict(out)
    assert written.keys() == src.state_dict().keys()
    assert all(torch.equal(written[k], v) for k, v in src.state_dict().items())
    report = load_pretrained(dst, out)
    assert report.missing == [] and report.unexpected == []
    assert all(torch.equal(dst.state_dict()[k], v) for k, v in src.state_dict().items())


def test_convert_vitpose_then_load(tmp_path: Path) -> None:
    src, dst = make_model(0), make_model(1)
    torch.save({"state_dict": vitpose_layout(src)}, tmp_path / "vitpose_small.pth")
    out = tmp_path / "vitpose_small.safetensors"
    assert run_cli(["convert", str(tmp_path / "vitpose_small.pth"), str(out), "--config", "none"]) == 0
    assert read_state_dict(out)["backbone.pos_embed"].shape == (1, 12, C)
    load_pretrained(dst, out, allow_missing=("encoder.",))
    with torch.no_grad():
        torch.testing.assert_close(dst(image()), src(image()))
    assert run_cli(["convert", str(tmp_path / "vitpose_small.pth"), str(tmp_path / "x.pth")]) == 2


PWNED: list[int] = []


def _pwn() -> None:
    PWNED.append(1)


class Payload:
    def __reduce__(self) -> tuple:
        return _pwn, ()


def test_pickled_objects_are_refused_not_run(tmp_path: Path) -> None:
    torch.save({"state_dict": make_model(0).state_dict(), "hook": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused by torch.load\(weights_only=True\).*_pwn"):
        read_state_dict(tmp_path / "evil.pth")
    assert PWNED == []


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such checkpoint file"):
        read_state_dict(tmp_path / "nope.pth")
    cases = {
        "w.txt": (b"x", "unknown suffix '.txt'"),
        "w.pth": (b"garbage", "not a readable PyTorch checkpoint"),
        "w.safetensors": (b"garbage", "not a readable safetensors file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=re.escape(f"{name}: {message}")):
            read_state_dict(tmp_path / name)
    torch.save({"model": {"w": torch.ones(1), "step": 3}}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="entry 'step' is a int, not a tensor"):
        read_state_dict(tmp_path / "mixed.pt")


def test_mapping_does_not_modify_its_input() -> None:
    sd = vitpose_layout(make_model(0))
    keys, pos = list(sd), sd["backbone.pos_embed"].clone()
    out, notes = map_vitpose_state_dict(sd, (2, 2))
    assert list(sd) == keys and torch.equal(sd["backbone.pos_embed"], pos)
    assert out["backbone.pos_embed"].shape == (1, 4, C) and notes.resampled == ["backbone.pos_embed"]
