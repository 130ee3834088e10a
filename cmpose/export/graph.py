"""The module that is exported: a CM-Pose model's inference forward, clip in, heatmaps out.

Shapes: B batch, T frames (keyframe in the middle), H x W crop, J joints, Hh x Wh heatmap,
L = T * N visual tokens, K kept tokens.

What stays outside the graph, because it is not the model's arithmetic and every runtime has its
own way to do it: cropping and normalising the person boxes (``cmpose.infer.video``), the flip test
(a second run on the mirrored clip, then ``cmpose.ops.heatmap.flip_back`` and the mean, as
``cmpose.engine.predict.predict_tokens``) and heatmap decoding (``HeatmapCodec``).
"""

from __future__ import annotations

from torch import Tensor, nn

from cmpose.models.cmpose import CMPose


def model_kind(model: CMPose) -> str:
    """``single`` (no encoder, T = 1), ``mcl`` (CM-Pose stage 1) or ``fte`` (stage 2): the stage
    kinds of ``cmpose.engine.stages.build_stage_model``."""
    if model.encoder is None:
        return "single"
    return "fte" if model.fte is not None else "mcl"


class InferenceGraph(nn.Module):
    """``model(clip)["heatmaps"]`` as a module with tensor outputs only (the exporters need them).

    Args:
        model: a CM-Pose model (any stage), put in eval mode: BatchNorm uses its running
            statistics and the stage-1 auxiliary branches, which run only in training, are not
            part of the graph.
        selection_outputs: stage 2 only: also return TCIS's kept token indices (B, K) and the
            cluster of every visual token (B, L), -1 for kept ones (``FTEOutput``). For tests
            that check that the top-K and the clustering export exactly; off in ``cmpose export``.
    """

    def __init__(self, model: CMPose, selection_outputs: bool = False) -> None:
        super().__init__()
        if selection_outputs and model.fte is None:
            raise ValueError("selection_outputs needs a stage-2 (fte) model")
        self.model = model.eval()
        self.selection_outputs = selection_outputs
        self.eval()

    def forward(self, clip: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """clip (B, T, 3, H, W) float32 normalised RGB crops -> heatmaps (B, J, Hh, Wh) float32
        on the unit-peak scale; with ``selection_outputs`` also kept_idx (B, K) and cluster_ids
        (B, L), both int64."""
        out = self.model(clip)
        if not self.selection_outputs:
            return out["heatmaps"]
        B = clip.shape[0]
        return out["heatmaps"], out["kept_idx"], out["cluster_ids"].reshape(B, -1)
