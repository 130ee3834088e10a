"""Heatmap heads: ViTPose's classic deconv head on the keyframe token grid, and the
TokenPose-style MLP that turns each keypoint token into its joint's heatmap."""

from __future__ import annotations

from torch import Tensor, nn


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
