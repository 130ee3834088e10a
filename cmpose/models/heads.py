"""Heatmap heads: ViTPose's classic deconv head and its simple decoder on the keyframe token
grid (``build_head`` picks one from ``HeadConfig``), and the TokenPose-style MLP that turns each
keypoint token into its joint's heatmap."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cmpose.models.config import HeadConfig


class HeatmapHead(nn.Module):
    """ViTPose's classic head: k x [ConvTranspose 4x4 s2 (no bias), BN, ReLU] + 1x1 conv.

    Attribute names match ViTPose checkpoints (``deconv_layers.{0,1,3,4}``, ``final_layer``).

    Args:
        in_channels: C of the token grid.
        num_joints: J.
        deconv_channels: output channels of each 2x deconv (ViTPose: (256, 256); the CPU tiny
            config uses fewer, the deconvs dominate a tiny model's cost otherwise).
    """

    def __init__(
        self, in_channels: int, num_joints: int, deconv_channels: tuple[int, ...] = (256, 256)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for out in deconv_channels:
            layers += [
                nn.ConvTranspose2d(ch, out, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            ch = out
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(ch, num_joints, kernel_size=1)
        self.upsample = 2 ** len(deconv_channels)
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, grid: Tensor) -> Tensor:
        """grid (B, C, Hp, Wp) -> heatmap logits (B, J, Hh, Wh), Hh = Hp * 2^k."""
        return self.final_layer(self.deconv_layers(grid))


class SimpleHeatmapHead(nn.Module):
    """ViTPose's simple decoder: ReLU, bilinear x4 upsampling, one 3x3 conv to J channels.

    ViTPose's ``TopdownHeatmapSimpleHead`` with ``num_deconv_layers=0``, ``upsample=4`` and
    ``final_conv_kernel=3`` (its ``_transform_inputs`` applies the ReLU and the resize with
    ``align_corners=False``); mmpose 1.x spells the same as a ``FeatureMapProcessor`` neck
    (``scale_factor=4, apply_relu=True``) before a ``HeatmapHead`` without deconvolutions. The
    only weights are ``final_layer.{weight,bias}``, the names of both checkpoints.

    Args:
        in_channels: C of the token grid.
        num_joints: J.
        upsample: the bilinear factor (ViTPose: 4, so 16x12 tokens give 64x48 heatmaps).
    """

    def __init__(self, in_channels: int, num_joints: int, upsample: int = 4) -> None:
        super().__init__()
        self.upsample = upsample
        self.final_layer = nn.Conv2d(in_channels, num_joints, kernel_size=3, padding=1)
        nn.init.normal_(self.final_layer.weight, std=0.001)  # ViTPose's init_weights
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, grid: Tensor) -> Tensor:
        """grid (B, C, Hp, Wp) -> heatmap logits (B, J, Hh, Wh), Hh = Hp * upsample."""
        x = F.interpolate(F.relu(grid), scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.final_layer(x)


def build_head(cfg: HeadConfig, in_channels: int, num_joints: int) -> HeatmapHead | SimpleHeatmapHead:
    """The keyframe heatmap head that ``cfg.kind`` names (classic or simple)."""
    if cfg.kind == "simple":
        return SimpleHeatmapHead(in_channels, num_joints)
    return HeatmapHead(in_channels, num_joints, cfg.deconv_channels)


class KeypointTokenHead(nn.Module):
    """Keypoint token -> its joint's heatmap (TokenPose's MLP head).

    Args:
        dim: C; hidden: MLP width; heatmap_size: (Hh, Wh).
    """

    def __init__(self, dim: int, hidden: int, heatmap_size: tuple[int, int]) -> None:
        super().__init__()
        self.heatmap_size = heatmap_size
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, heatmap_size[0] * heatmap_size[1])

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, J, C) -> heatmap logits (B, J, Hh, Wh)."""
        B, J, _ = tokens.shape
        out = self.fc2(self.act(self.fc1(self.norm(tokens))))
        return out.view(B, J, *self.heatmap_size)
