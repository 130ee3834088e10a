"""Model settings: one dataclass per part, each handed only to the module that uses it.

Numbers marked "ours" in ../shared/docs/method.md (the paper does not give them) are defaults
here, and every part has a switch that turns it off so that it can be ablated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# ViTPose's sizes (C, depth, heads, drop-path) from its COCO 256x192 configs; "tiny" is ours, for
# the CPU, with a conv stem (two 3x3 stride-2 convs) that converged about twice as fast from
# scratch as a bare 16x16 patch projection in a CPU trial (method.md).
VIT_SIZES: dict[str, dict[str, float]] = {
    "tiny": {"embed_dim": 128, "depth": 4, "num_heads": 4, "drop_path_rate": 0.0},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 12, "drop_path_rate": 0.1},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12, "drop_path_rate": 0.3},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "drop_path_rate": 0.5},
    "huge": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "drop_path_rate": 0.55},
}


@dataclass
class BackboneConfig:
    """The per-frame ViT. Fields left at None take the ``size`` preset's value.

    Args:
        size: tiny / small / base / large / huge (``VIT_SIZES``).
        patch_size: total stride from image to token grid (16 = ViTPose).
        patch_padding: padding of the patch projection (2 = ViTPose, so its weights see the
            same grid); ignored with a stem.
        stem_channels: 0 = ViTPose's plain patch projection; > 0 = two 3x3 stride-2 convs with
            this many channels before a (patch_size/4) projection.
        grad_checkpointing: recompute block activations in backward (large sizes on small GPUs).
        grad_frames: in training with T > 1, which frames' backbone passes carry a gradient:
            ``all`` (the default), or ``keyframe``: the T - 1 neighbours run without one, so a
            clip's backbone step costs 1 backward instead of T (the neighbours still inform the
            encoder; the backbone learns through the keyframe's tokens). Ours for the CPU demo,
            where the backbone's T backward passes are most of an MCL step (docs/results.md).
    """

    size: Literal["tiny", "small", "base", "large", "huge"] = "base"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    drop_path_rate: float | None = None
    mlp_ratio: float = 4.0
    patch_size: int = 16
    patch_padding: int = 2
    stem_channels: int = 0
    grad_checkpointing: bool = False
    grad_frames: Literal["all", "keyframe"] = "all"

    def __post_init__(self) -> None:
        if self.grad_frames not in ("all", "keyframe"):
            raise ValueError(f"grad_frames must be 'all' or 'keyframe', got {self.grad_frames!r}")
        if self.size not in VIT_SIZES:
            raise ValueError(f"backbone size must be one of {sorted(VIT_SIZES)}, got {self.size!r}")
        preset = VIT_SIZES[self.size]
        for name in ("embed_dim", "depth", "num_heads"):
            if getattr(self, name) is None:
                setattr(self, name, int(preset[name]))
        if self.drop_path_rate is None:
            self.drop_path_rate = float(preset["drop_path_rate"])
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.stem_channels and self.patch_size % 4:
            raise ValueError(f"with a conv stem patch_size must be a multiple of 4, got {self.patch_size}")


@dataclass
class HeadConfig:
    """Heatmap head on the keyframe token grid; ViTPose's two heads.

    Args:
        kind: ``classic``: k x [deconv 4x4 s2, BN, ReLU] + 1x1 conv; ``simple``: ReLU, bilinear
            x4, 3x3 conv (ViTPose's "simple decoder"; no BatchNorm, no deconvolutions).
        deconv_channels: classic only: one entry per 2x upsampling deconv (ViTPose: (256, 256)).
    """

    kind: Literal["classic", "simple"] = "classic"
    deconv_channels: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if self.kind not in ("classic", "simple"):
            raise ValueError(f"head kind must be 'classic' or 'simple', got {self.kind!r}")


@dataclass
class EncoderConfig:
    """Spatio-temporal encoder over [J keypoint tokens ; T*N visual tokens].

    Args:
        enabled: False = the single-frame baseline (keyframe tokens go straight to the head).
        depth: L1 blocks; num_heads: attention heads (must divide C).
        keypoint_loss_weight: weight of the keypoint tokens' own heatmap loss (ours: 0.25), relative
            to the pose term under ``model.loss.aux_balance``. It is what makes their attention,
            which TCIS reads, mean something.
        keypoint_head_hidden: hidden width of the TokenPose-style MLP (keypoint token -> heatmap).
    """

    enabled: bool = True
    depth: int = 2
    num_heads: int = 8
    keypoint_loss_weight: float = 0.25
    keypoint_head_hidden: int = 256


@dataclass
class AuxConfig:
    """Stage-1 auxiliary tasks (MCL), run in training only.

    Args:
        mask / noise: turn each branch on or off.
        mask_ratio: share r_m of visual tokens replaced by the mask token (ours: 0.3).
        noise_ratio: share r_n of visual tokens that get noise (ours: 0.3).
        noise_std: sigma_n: the noise is N(0, sigma_n^2 * Var(tokens)) (ours: 0.5).
        mask_shape / noise_shape: where the corrupted tokens fall (``cmpose.models.masking``):
            ``tube`` = rectangles of the token grid hidden in every frame, like an occluder, plus
            keyframe-only ones; ``block`` = rectangles drawn in each frame on its own; ``token`` =
            any tokens (the original form; most of them can be copied from a neighbouring frame).
            Ours: ``tube`` for the mask, ``block`` for the noise (defocus changes between frames).
        mask_keyframe_share: ``tube`` only: share of the masked tokens hidden in the keyframe alone
            (visible in the neighbours: it trains filling the keyframe from them; ours: 0.25).
        noise_keyframe_share: the same for ``noise_shape: tube``.
        block_min_cells: smallest rectangle, in tokens, while the budget allows (ours: 4).
        block_max_aspect: largest h/w or w/h of a rectangle (BEiT: 1/0.3; ours: 3).
        mask_weight / noise_weight: lambda_m, lambda_n of the reconstruction losses, relative to
            the pose term under ``model.loss.aux_balance`` (``cmpose.models.balance``). Ours: 0.2
            and 0.1, with the keypoint weight 0.25 and ``heatmap_weight`` 0.5: the values at which
            the pose term's gradient on the shared layers is the largest of all terms after 200
            steps of the demo and PoseTrack configs (docs/training.md, "Loss scales").
        heatmap_weight: weight of the heatmap loss of the masked and noisy branches (ours: 0.5).
        decoder_hidden: hidden width of the light 2-layer MLP decoders.
        normalize_targets: regress each backbone token standardised over its channels (MAE's
            norm_pix_loss) instead of the raw token, so the term's scale does not depend on the
            backbone's feature magnitude.
        batch_share: share of each batch (its first ceil(share * B) clips) that the auxiliary
            branches corrupt (1 = all). Each branch is a second encoder pass plus a heatmap head
            pass over its clips, as costly as the clean path on the CPU demo; a share trades
            auxiliary signal for steps (docs/results.md).
    """

    mask: bool = True
    noise: bool = True
    mask_ratio: float = 0.3
    noise_ratio: float = 0.3
    noise_std: float = 0.5
    mask_shape: Literal["tube", "block", "token"] = "tube"
    noise_shape: Literal["tube", "block", "token"] = "block"
    mask_keyframe_share: float = 0.25
    noise_keyframe_share: float = 0.0
    block_min_cells: int = 4
    block_max_aspect: float = 3.0
    mask_weight: float = 0.2
    noise_weight: float = 0.1
    heatmap_weight: float = 0.5
    decoder_hidden: int = 256
    normalize_targets: bool = True
    batch_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.batch_share <= 1.0:
            raise ValueError(f"batch_share must be in (0, 1], got {self.batch_share}")
        for name in ("mask_ratio", "noise_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("mask_shape", "noise_shape"):
            if getattr(self, name) not in ("tube", "block", "token"):
                raise ValueError(f"{name} must be tube, block or token, got {getattr(self, name)!r}")
        for name in ("mask_keyframe_share", "noise_keyframe_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.block_min_cells < 1:
            raise ValueError(f"block_min_cells must be >= 1, got {self.block_min_cells}")
        if not self.block_max_aspect >= 1.0:
            raise ValueError(f"block_max_aspect must be >= 1, got {self.block_max_aspect}")


@dataclass
class FTEConfig:
    """Stage-2 Fine Token Enhancement: TCIS + non-causal token clustering + refinement.

    Args:
        keep_ratio: share of the T*N visual tokens kept as causal (ours: 0.5).
        cluster: False = drop the non-causal tokens instead of clustering them (ablation).
        cluster_ratio: M = ceil(cluster_ratio * (T*N - K)) clusters (ours: 0.25).
        knn: k of DPC-KNN's density (TCFormer: 5).
        depth / num_heads: L2 refinement blocks.
        coarse_weight: weight of the coarse heatmap loss in stage 2.
    """

    keep_ratio: float = 0.5
    cluster: bool = True
    cluster_ratio: float = 0.25
    knn: int = 5
    depth: int = 2
    num_heads: int = 8
    coarse_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {self.keep_ratio}")
        if not 0.0 < self.cluster_ratio <= 1.0:
            raise ValueError(f"cluster_ratio must be in (0, 1], got {self.cluster_ratio}")


@dataclass
class LossConfig:
    """Heatmap loss.

    Args:
        kind: ``mse`` (ViTPose; target-weighted MSE against unit-peak Gaussians) or
            ``softmax_ce`` (per-joint softmax cross-entropy against the normalised Gaussian;
            about twice as fast to converge from scratch in a CPU trial, method.md).
        aux_balance: how the auxiliary terms (keypoint tokens, masked and denoised tokens) are put
            on the pose term's scale, whatever ``kind``: ``gradient`` (their pull on the shared
            layers is lambda x the pose term's), ``loss`` (their value is lambda x the pose
            loss) or ``none`` (raw); ``cmpose.models.balance``, docs/training.md "Loss scales".
    """

    kind: Literal["mse", "softmax_ce"] = "mse"
    aux_balance: Literal["gradient", "loss", "none"] = "gradient"

    def __post_init__(self) -> None:
        if self.aux_balance not in ("gradient", "loss", "none"):
            raise ValueError(f"aux_balance must be gradient, loss or none, got {self.aux_balance!r}")


@dataclass
class ModelConfig:
    """CM-Pose. ``stage`` 1 = MCL (aux tasks), 2 = MCL model + FTE; ``encoder.enabled: false``
    with one frame gives the single-frame baseline."""

    stage: Literal[1, 2] = 1
    num_joints: int = 17
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)
    fte: FTEConfig = field(default_factory=FTEConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (MCL) or 2 (MCL + FTE), got {self.stage!r}")
