"""CM-Pose: ViT per frame -> spatio-temporal encoder -> heatmap head, with the stage-1
auxiliary tasks (MCL) and the stage-2 Fine Token Enhancement (FTE).

Shapes: B batch, T frames (keyframe in the middle), N = Hp*Wp tokens per frame, L = T*N,
C channels, J joints, K kept tokens, M clusters, Hh x Wh heatmap.

The backbone step and the rest are separate (``encode_frames`` / ``forward_tokens``) so that a
video run computes each frame's tokens once and reuses them in every clip holding the frame.
The auxiliary branches reuse the clean branch's backbone tokens: the backbone runs once per clip
(in two calls with ``grad_frames: keyframe``: the keyframes with a gradient, the neighbours without).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from cmpose.models.aux_tasks import DenoisingBranch, MaskedTokenBranch
from cmpose.models.balance import Balancer
from cmpose.models.config import ModelConfig
from cmpose.models.encoder import SpatioTemporalEncoder
from cmpose.models.fte import FineTokenEnhancement
from cmpose.models.heads import KeypointTokenHead, build_head
from cmpose.models.losses import (
    heatmap_loss,
    heatmap_output,
    masked_token_loss,
    normalized_tokens,
)
from cmpose.models.masking import RegionSampler
from cmpose.models.tcis import token_importance
from cmpose.models.vit import ViT


class CMPose(nn.Module):
    """Args:
    cfg: the model's settings (``ModelConfig``).
    image_size: crop (W, H), as in ``CropConfig``.
    heatmap_size: (Wh, Hh); must equal the token grid times the head's upsampling.
    num_frames: T (1 for the single-frame baseline).
    sigma: Gaussian target sigma in heatmap pixels (scales softmax outputs to unit peak).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        image_size: tuple[int, int],
        heatmap_size: tuple[int, int],
        num_frames: int,
        sigma: float = 2.0,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.stage = cfg.stage
        self.num_frames = num_frames
        self.key_frame = num_frames // 2
        self.sigma = sigma
        self.loss_kind = cfg.loss.kind
        b = cfg.backbone
        self.backbone = ViT(
            img_size=(image_size[1], image_size[0]),
            patch_size=b.patch_size,
            patch_padding=b.patch_padding,
            embed_dim=b.embed_dim,
            depth=b.depth,
            num_heads=b.num_heads,
            mlp_ratio=b.mlp_ratio,
            drop_path_rate=b.drop_path_rate,
            stem_channels=b.stem_channels,
            grad_checkpointing=b.grad_checkpointing,
        )
        C, (Hp, Wp) = b.embed_dim, self.backbone.grid
        self.grid = (Hp, Wp)
        self.keypoint_head = build_head(cfg.head, C, cfg.num_joints)
        up = self.keypoint_head.upsample
        if (Wp * up, Hp * up) != tuple(heatmap_size):
            raise ValueError(
                f"heatmap_size {tuple(heatmap_size)} (W, H) does not match the token grid {Wp}x{Hp} "
                f"times the head's x{up} upsampling ({Wp * up}x{Hp * up}): change crop.heatmap_size "
                "or model.head.deconv_channels"
            )
        self.heatmap_size = (Hp * up, Wp * up)

        e = cfg.encoder
        self.encoder: SpatioTemporalEncoder | None = None
        if e.enabled:
            self.encoder = SpatioTemporalEncoder(C, e.depth, e.num_heads, num_frames, Hp * Wp, cfg.num_joints)
        # The keypoint tokens' own heatmaps: only with their loss (an unused trainable module
        # breaks DDP; without the loss the keypoint attention that TCIS reads means nothing).
        self.keypoint_token_head = (
            KeypointTokenHead(C, e.keypoint_head_hidden, self.heatmap_size)
            if e.enabled and e.keypoint_loss_weight > 0
            else None
        )
        if not e.enabled and num_frames != 1:
            raise ValueError(f"without the encoder the model sees one frame; got num_frames={num_frames}")
        if not e.enabled and cfg.stage == 2:
            raise ValueError("stage 2 (FTE) reads the encoder's keypoint attention: enable model.encoder")

        a = cfg.aux
        # Where each branch corrupts tokens on the (T, Hp, Wp) grid (cmpose.models.masking).
        mask_at, noise_at = (
            RegionSampler(
                shape, num_frames, (Hp, Wp), self.key_frame, share, a.block_min_cells, a.block_max_aspect
            )
            for shape, share in (
                (a.mask_shape, a.mask_keyframe_share),
                (a.noise_shape, a.noise_keyframe_share),
            )
        )
        self.aux_mask = (
            MaskedTokenBranch(C, a.decoder_hidden, a.mask_ratio, mask_at) if e.enabled and a.mask else None
        )
        self.aux_noise = (
            DenoisingBranch(C, a.decoder_hidden, a.noise_ratio, a.noise_std, noise_at)
            if e.enabled and a.noise
            else None
        )
        # The joints TCIS sums over: those the training data labels (PoseTrack never labels the
        # ears, so their keypoint tokens are unsupervised). The trainer sets it at each stage's
        # start; it is saved with the weights, and a checkpoint from before it loads as "all".
        self.register_buffer("supervised_joints", torch.ones(cfg.num_joints, dtype=torch.bool))
        self.register_load_state_dict_pre_hook(_default_supervised_joints)
        self.fte: FineTokenEnhancement | None = None
        if cfg.stage == 2:
            f = cfg.fte
            self.fte = FineTokenEnhancement(
                C, f.depth, f.num_heads, cfg.num_joints, f.keep_ratio, f.cluster, f.cluster_ratio, f.knn
            )
            # The auxiliary branches are stage-1 only; they stay in the model so stage-1
            # checkpoints load strictly, but are frozen (no gradient reaches them in stage 2).
            for branch in (self.aux_mask, self.aux_noise):
                if branch is not None:
                    branch.requires_grad_(False)

    # --- the two steps ----------------------------------------------------------------------------
    def encode_frames(self, frames: Tensor) -> Tensor:
        """frames (B*T, 3, H, W) normalised crops -> backbone tokens (B*T, N, C)."""
        return self.backbone(frames)

    def forward(
        self, clip: Tensor, targets: dict[str, Tensor] | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """clip (B, T, 3, H, W) -> outputs (see ``forward_tokens``)."""
        B, T = clip.shape[:2]
        if T != self.num_frames:
            raise ValueError(f"model was built for T={self.num_frames} frames, got a clip of {T}")
        keyframe_grad = self.cfg.backbone.grad_frames == "keyframe"
        if T > 1 and keyframe_grad and self.training and torch.is_grad_enabled():
            return self.forward_tokens(self._keyframe_grad_tokens(clip), targets, generator)
        tokens = self.encode_frames(clip.flatten(0, 1))
        return self.forward_tokens(tokens.view(B, T, *tokens.shape[1:]), targets, generator)

    def _keyframe_grad_tokens(self, clip: Tensor) -> Tensor:
        """clip (B, T, 3, H, W) -> tokens (B, T, N, C), the neighbours' without a gradient
        (``BackboneConfig.grad_frames: keyframe``)."""
        k = self.key_frame
        key = self.encode_frames(clip[:, k])  # (B, N, C)
        with torch.no_grad():
            others = torch.cat([clip[:, :k], clip[:, k + 1 :]], dim=1)  # (B, T-1, 3, H, W)
            neigh = self.encode_frames(others.flatten(0, 1)).view(*others.shape[:2], *key.shape[1:])
        return torch.cat([neigh[:, :k], key[:, None], neigh[:, k:]], dim=1)

    def forward_tokens(
        self,
        tokens: Tensor,
        targets: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """tokens (B, T, N, C) -> dict:

        heatmaps (B, J, Hh, Wh): the prediction on the unit-peak scale (fine in stage 2);
        coarse_heatmaps, fine_heatmaps (stage 2), keypoint_heatmaps (encoder's keypoint tokens);
        importance (B, T, Hp, Wp) TCIS scores; cluster_ids (B, T, Hp, Wp) long, -1 = kept (stage 2);
        loss: dict of the weighted terms and ``total`` when ``targets`` ({target (B, J, Hh, Wh),
        target_weight (B, J)}) are given, the auxiliary ones balanced against the main pose term
        (``cmpose.models.balance``); raw_losses: their unbalanced values (detached), for logging.
        Auxiliary branches run only in training with targets.
        """
        B, T, N, C = tokens.shape
        Hp, Wp = self.grid
        out: dict[str, Any] = {}
        losses: dict[str, Tensor] = {}
        tgt = targets["target"] if targets is not None else None
        tw = targets["target_weight"] if targets is not None else None

        if self.encoder is None:
            coarse = self._head(tokens[:, self.key_frame])
            out["coarse_heatmaps"] = out["heatmaps"] = heatmap_output(self.loss_kind, coarse, self.sigma)
            if tgt is not None:
                losses["pose"] = heatmap_loss(self.loss_kind, coarse, tgt, tw)
            return self._finish(out, losses)

        flat = tokens.flatten(1, 2)  # (B, L, C)
        enc = self.encoder(tokens)
        key = enc.visual.view(B, T, N, C)[:, self.key_frame]  # (B, N, C)
        # In stage 2 the fine path is what inference uses: only it updates the head's BatchNorm
        # statistics.
        coarse = self._head(key, update_stats=self.fte is None)
        importance = token_importance(enc.attn, self.cfg.num_joints, self.supervised_joints)  # (B, L) fp32
        out["coarse_heatmaps"] = heatmap_output(self.loss_kind, coarse, self.sigma)
        out["importance"] = importance.detach().view(B, T, Hp, Wp)
        kp_loss = None
        if self.keypoint_token_head is not None:
            kp_logits = self.keypoint_token_head(enc.keypoints)
            out["keypoint_heatmaps"] = heatmap_output(self.loss_kind, kp_logits, self.sigma)
            if tgt is not None:
                kp_loss = heatmap_loss(self.loss_kind, kp_logits, tgt, tw)
        if tgt is not None:
            w = self.cfg.fte.coarse_weight if self.fte is not None else 1.0
            main_loss, main_rep = heatmap_loss(self.loss_kind, coarse, tgt, tw), key
            losses["pose"] = w * main_loss

        if self.fte is not None:
            f = self.fte(enc.keypoints, enc.visual, importance, self.key_frame, N)
            fine_in = key + f.delta
            fine = self._head(fine_in)
            out["fine_heatmaps"] = out["heatmaps"] = heatmap_output(self.loss_kind, fine, self.sigma)
            out["cluster_ids"] = f.cluster_ids.view(B, T, Hp, Wp)
            out["kept_idx"] = f.kept_idx
            if tgt is not None:
                main_loss, main_rep = heatmap_loss(self.loss_kind, fine, tgt, tw), fine_in
                losses["fine"] = main_loss
        else:
            out["heatmaps"] = out["coarse_heatmaps"]
        if tgt is None:
            return self._finish(out, losses)

        # The auxiliary terms on the main term's scale (cmpose.models.balance); their raw values
        # are reported apart, as the balanced values follow the main term.
        balance = Balancer(self.cfg.loss.aux_balance, main_loss, main_rep)
        raw: dict[str, Tensor] = {}
        if kp_loss is not None:
            raw["keypoint"] = kp_loss.detach()
            losses["keypoint"] = self.cfg.encoder.keypoint_loss_weight * balance(kp_loss, enc.keypoints)

        if self.training and self.stage == 1:
            a = self.cfg.aux
            Ba = max(1, math.ceil(a.batch_share * B))  # the clips the branches corrupt
            src = flat[:Ba]
            # Stop-gradient: the decoders regress the backbone tokens, standardised per token.
            target_tokens = normalized_tokens(src.detach()) if a.normalize_targets else src.detach()
            for name, branch, weight in (
                ("mask", self.aux_mask, self.cfg.aux.mask_weight),
                ("noise", self.aux_noise, self.cfg.aux.noise_weight),
            ):
                if branch is None:
                    continue
                corrupted, where = branch.corrupt(src, generator)
                aux = self.encoder(corrupted.view(Ba, T, N, C), need_attn=False)
                rec = branch.decoder(aux.visual)
                rec_loss = masked_token_loss(rec, target_tokens, where)
                raw[name] = rec_loss.detach()
                losses[name] = weight * balance(rec_loss, aux.visual)
                if a.heatmap_weight > 0:  # the head is most of a branch's cost at stride-2 heatmaps
                    aux_key = aux.visual.view(Ba, T, N, C)[:, self.key_frame]
                    # Corrupted tokens must not shift the BatchNorm statistics inference uses.
                    aux_hm = self._head(aux_key, update_stats=False)
                    losses[f"{name}_pose"] = a.heatmap_weight * heatmap_loss(
                        self.loss_kind, aux_hm, tgt[:Ba], tw[:Ba]
                    )
        out["raw_losses"] = raw
        return self._finish(out, losses)

    # --- helpers ----------------------------------------------------------------------------------
    def _head(self, tokens: Tensor, update_stats: bool = True) -> Tensor:
        """Keyframe tokens (B, N, C) -> heatmap logits (B, J, Hh, Wh). With ``update_stats`` False
        the head's BatchNorms still normalise with the batch's statistics in training but leave
        their running statistics alone (momentum 0 for this call)."""
        if update_stats or not self.training:
            return self.keypoint_head(self._grid(tokens))
        norms = [m for m in self.keypoint_head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            return self.keypoint_head(self._grid(tokens))
        finally:
            for m, mom in zip(norms, saved, strict=True):
                m.momentum = mom

    def _grid(self, tokens: Tensor) -> Tensor:
        """(B, N, C) -> (B, C, Hp, Wp)."""
        B, N, C = tokens.shape
        return tokens.transpose(1, 2).reshape(B, C, *self.grid)

    @staticmethod
    def _finish(out: dict[str, Any], losses: dict[str, Tensor]) -> dict[str, Any]:
        if losses:
            losses["total"] = torch.stack([v.float() for v in losses.values()]).sum()
            out["loss"] = losses
        return out


def _default_supervised_joints(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """A state dict without ``supervised_joints`` (a checkpoint from before it, or a partial load
    such as ViTPose weights) keeps the model's own value: all joints on a fresh model, as TCIS
    summed before."""
    key = prefix + "supervised_joints"
    if key not in state_dict:
        state_dict[key] = module.supervised_joints.detach().clone()


def build_model(
    cfg: ModelConfig,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    num_frames: int,
    sigma: float,
) -> CMPose:
    """The one place the training, test and inference commands build a model."""
    return CMPose(cfg, image_size, heatmap_size, num_frames, sigma)
