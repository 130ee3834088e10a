"""``cmpose export``: the single-frame, stage-1 and stage-2 inference graphs in onnxruntime give
PyTorch's heatmaps (within 1e-4), TCIS's top-K and DPC-KNN's clusters exactly, at batch 1 and 3
from one dynamic-batch file. Needs the ``onnx`` extra (CI installs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
import torch  # noqa: E402
from tiny_configs import TINY_CROP, TINY_MODEL  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from cmpose.api import export_onnx, init_model  # noqa: E402
from cmpose.cli.main import main  # noqa: E402
from cmpose.config import from_dict, to_dict  # noqa: E402
from cmpose.engine.config import ExperimentConfig  # noqa: E402
from cmpose.export.onnx_ops import translation_table  # noqa: E402
from cmpose.export.to_onnx import export_model  # noqa: E402
from cmpose.export.verify import compare, ort_session  # noqa: E402
from cmpose.models.tcis import keep_count  # noqa: E402
from cmpose.models.token_cluster import cluster_count  # noqa: E402

STAGES = [
    {"name": "pretrain", "kind": "single"},
    {"name": "mcl", "kind": "mcl"},
    {"name": "fte", "kind": "fte"},
]
IMAGE_SIZE = tuple(TINY_CROP["image_size"])  # (W, H) = (48, 64): a 4 x 3 token grid
TOLERANCE = 1e-4  # the bound on |onnxruntime - PyTorch| heatmaps


def config() -> ExperimentConfig:
    data = {"crop": TINY_CROP, "clip": {"num_frames": 3}}
    return from_dict(ExperimentConfig, {"data": data, "model": TINY_MODEL, "stages": STAGES})


def randomized(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """Every floating tensor drawn anew (std 0.2; BatchNorm variances in [0.5, 1.5]): the
    initialisation's zero output projections and 0.001-std heads would make every heatmap ~0,
    and any two graphs agree on zeros."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.is_floating_point():
            out[k] = 0.2 * torch.randn(v.shape, generator=g)
        else:
            out[k] = v.clone()
    return out


def tiny_model(stage: str, seed: int = 1) -> nn.Module:
    model = init_model(config(), stage=stage)
    model.load_state_dict(randomized(model, seed))
    return model.eval()


def input_dims(proto: onnx.ModelProto) -> list[int | str]:
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


class Sorts(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        down = torch.sort(x, dim=-1, descending=True, stable=True)
        up = torch.sort(x, dim=-1, descending=False, stable=True)
        cols = torch.sort(x, dim=0, descending=True, stable=True)
        return down.values, down.indices, up.indices, cols.indices


def test_stable_sort_translation_keeps_ties_in_index_order(one_torch_thread: None) -> None:
    """TCIS and DPC-KNN rank with a stable sort; its ONNX form (TopK over the whole axis) must
    order equal scores by index, as torch does, or the kept tokens would differ on ties."""
    x = torch.randint(0, 3, (4, 9), generator=torch.Generator().manual_seed(0)).float()  # many ties
    program = torch.onnx.export(
        Sorts().eval(),
        (x,),
        dynamo=True,
        opset_version=18,
        custom_translation_table=translation_table(),
        verbose=False,
    )
    got = ort_session(program.model_proto.SerializeToString()).run(None, {"x": x.numpy()})
    for ours, ref in zip(got, Sorts()(x), strict=True):
        assert torch.equal(torch.from_numpy(ours), ref)


# The single-frame model: test_cli_exports_a_checkpoint_atomically_and_checks_it (each export
# takes seconds, so each model is exported once).
@pytest.mark.parametrize("stage", ["mcl", "fte"])
def test_onnxruntime_matches_pytorch_at_batch_1_and_3(stage: str, one_torch_thread: None) -> None:
    model = tiny_model(stage)
    fte = stage == "fte"
    data = export_model(model, IMAGE_SIZE, selection_outputs=fte)
    proto = onnx.load_from_string(data)
    assert input_dims(proto) == ["batch", model.num_frames, 3, 64, 48]
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    diffs = compare(ort_session(data), model, IMAGE_SIZE, [1, 3], selection_outputs=fte)
    for batch, (heatmaps, *selection) in diffs.items():
        assert heatmaps.shape == (batch, 17, 16, 12)
        assert heatmaps.max() <= TOLERANCE, (batch, heatmaps.max())
        for d in selection:  # kept_idx (B, K), cluster_ids (B, L): integers, equal or not
            assert d.max() == 0, (batch, d.max())
    # The comparison means something: the heatmaps vary, and stage 2 really clusters.
    with torch.no_grad():
        out = model(torch.randn(3, model.num_frames, 3, 64, 48, generator=torch.Generator().manual_seed(4)))
    assert out["heatmaps"].std() > 1e-2
    if fte:
        L = model.num_frames * 12
        K = keep_count(L, model.fte.keep_ratio)
        ids = out["cluster_ids"].flatten(1)
        assert out["kept_idx"].shape == (3, K)
        assert ((ids >= 0).sum(dim=1) == L - K).all()
        assert int(ids.max()) + 1 == cluster_count(L - K, model.fte.cluster_ratio) > 1


def test_cli_exports_a_checkpoint_atomically_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    model = tiny_model("pretrain", seed=2)
    ckpt = tmp_path / "final.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(config()), "stage": "pretrain"}, ckpt)
    out = tmp_path / "models" / "single.onnx"

    args = ["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--batch", "2", "--check", "--time"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "single model, clip (2, 1, 3, 64, 48) float32 -> heatmaps (2, 17, 16, 12), opset 18" in printed
    diff = float(printed.split("batch 2: max |heatmap difference| ")[1].split()[0])
    assert diff <= TOLERANCE
    assert "onnxruntime / PyTorch" in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["single.onnx"]  # no temporary left
    proto = onnx.load(out)
    assert input_dims(proto) == [2, 1, 3, 64, 48]  # --batch fixes the batch axis
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["cmpose.kind"] == "single" and props["cmpose.std"] == "[0.229, 0.224, 0.225]"

    # Bad requests fail with one line naming the problem, and write nothing.
    bad = tmp_path / "x.txt"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(bad)]) == 2
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--stage", "fte"]) == 2
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--onnx", str(out)]) == 2
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out), "--batch", "0"]) == 2
    assert not bad.exists()

    # With a config the checkpoint goes through init_model (so do ViTPose files): same model here.
    result = export_onnx(ckpt, tmp_path / "cfg.onnx", config=config(), stage="pretrain", check=True)
    assert result.kind == "single" and result.input_shape == ("batch", 1, 3, 64, 48)
    assert sorted(result.max_abs_diff) == [1, 3] and max(result.max_abs_diff.values()) <= TOLERANCE


def test_missing_exporter_packages_are_named_with_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from cmpose.export.to_onnx import ExportError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name)
    )
    with pytest.raises(ExportError, match=r"needs onnxscript: pip install 'cmpose\[onnx\]'"):
        export_model(tiny_model("pretrain"), IMAGE_SIZE)
