"""Test-only reference implementations of the architectures whose checkpoints cmpose imports,
written from their descriptions (../shared/docs/anchors.md 2.1; ViTPose's paper and configs),
independent of ``cmpose.models``: attention as an explicit softmax product, heads as plain
Sequentials, no shared code. The parameter names are the original ones, so ``state_dict()``
gives each file's real key layout.

- ``ViTPoseViT``: ViTPose's backbone. ``pos_embed`` (1, 1+N, C) whose first row is added to every
  patch (``x + pos[:, 1:] + pos[:, :1]``), no class token in the sequence, pre-norm blocks with
  LayerNorm eps 1e-6, ``last_norm``. With ``num_experts`` > 0 its MLPs are ViTPose+'s: ``fc2``
  gives the first C - P output channels, ``experts[dataset]`` the last P.
- ``ClassicHead`` (2 x deconv 4x4 s2 + BN + ReLU, then 1x1 conv) and ``SimpleHead`` (ReLU,
  bilinear x4 with align_corners=False, 3x3 conv): ViTPose's two heads.
- ``TopDown``: ``backbone`` + ``keypoint_head`` (+ optional unused ``associate_keypoint_heads``,
  as the multi-dataset files carry), the mmpose 0.x TopDown layout.
- ``mae_into_vitpose``: how ViTPose loads an MAE file into its backbone (mmcv_custom
  load_checkpoint: the patch rows of pos_embed resampled bicubically, the class row kept,
  ``norm`` / ``cls_token`` ignored so ``last_norm`` stays at its init).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMG = (256, 192)  # (H, W): ViTPose's 256x192 crops -> 16x12 tokens with patch 16, padding 2
GRID = (16, 12)
C = 768  # ViT-B width; depth is reduced in the tests (the key layout is the real one)
HEADS = 12


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q @ k.transpose(-1, -2)) / (D // self.heads) ** 0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(B, N, D))


class RefMlp(nn.Module):
    """fc1 -> GELU -> fc2; ViTPose+'s mixture of experts when ``num_experts`` > 0."""

    def __init__(self, dim: int, hidden: int, num_experts: int = 0, part: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim - part if num_experts else dim)
        self.experts = nn.ModuleList(nn.Linear(hidden, part) for _ in range(num_experts))

    def forward(self, x: Tensor, dataset: int) -> Tensor:
        h = F.gelu(self.fc1(x))
        if not len(self.experts):
            return self.fc2(h)
        return torch.cat([self.fc2(h), self.experts[dataset](h)], dim=-1)


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, num_experts: int, part: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim, 4 * dim, num_experts, part)

    def forward(self, x: Tensor, dataset: int) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x), dataset)


class RefPatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16, padding=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTPoseViT(nn.Module):
    """(B, 3, 256, 192) -> (B, C, 16, 12) features; ``tokens`` gives (B, N, C)."""

    def __init__(self, depth: int, dim: int = C, heads: int = HEADS, num_experts: int = 0, part: int = 0):
        super().__init__()
        self.patch_embed = RefPatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + GRID[0] * GRID[1], dim))
        self.blocks = nn.ModuleList(RefBlock(dim, heads, num_experts, part) for _ in range(depth))
        self.last_norm = nn.LayerNorm(dim, eps=1e-6)

    def tokens(self, x: Tensor, dataset: int = 0) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x, dataset)
        return self.last_norm(x)

    def forward(self, x: Tensor, dataset: int = 0) -> Tensor:
        t = self.tokens(x, dataset)
        return t.transpose(1, 2).reshape(x.shape[0], -1, *GRID)


class ClassicHead(nn.Module):
    def __init__(self, in_channels: int, joints: int) -> None:
        super().__init__()
        self.deconv_layers = nn.Sequential(
            nn.ConvTranspose2d(in_channels, 256, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 256, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
        )
        self.final_layer = nn.Conv2d(256, joints, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.final_layer(self.deconv_layers(x))


class SimpleHead(nn.Module):
    def __init__(self, in_channels: int, joints: int) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, joints, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(F.relu(x), scale_factor=4, mode="bilinear", align_corners=False)
        return self.final_layer(x)


class TopDown(nn.Module):
    """ViTPose's TopDown: heatmaps (B, J, 64, 48) of ``keypoint_head`` on the backbone features."""

    def __init__(self, backbone: ViTPoseViT, head: nn.Module, extra_heads: list[nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        self.keypoint_head = head
        if extra_heads:
            self.associate_keypoint_heads = nn.ModuleList(extra_heads)

    def forward(self, x: Tensor) -> Tensor:
        return self.keypoint_head(self.backbone(x))


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Every tensor drawn at random, at a scale that keeps activations near unit size (weights
    ~ 1/sqrt(fan-in), norm weights around 1, BatchNorm variances in [0.5, 1.5]), so that no weight
    is invisible in the outputs and a 1e-4 tolerance means something; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(1000)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("pos_embed", "cls_token")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif t.ndim >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5)
            else:
                base = 1.0 if name.endswith("weight") else 0.0  # norm scales around 1, shifts around 0
                t.copy_(base + torch.randn(t.shape, generator=g) * 0.1)
    return module.eval()


def mae_into_vitpose(mae: dict[str, Tensor], depth: int) -> ViTPoseViT:
    """ViTPose's backbone after loading an MAE encoder (timm names, 14x14 grid + class row)."""
    vit = ViTPoseViT(depth)
    nn.init.ones_(vit.last_norm.weight)
    nn.init.zeros_(vit.last_norm.bias)
    pos = mae["pos_embed"]
    side = int((pos.shape[1] - 1) ** 0.5)
    patch = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=GRID, mode="bicubic", align_corners=False)
    own = {k: v for k, v in mae.items() if k in vit.state_dict() and k != "pos_embed"}
    own["pos_embed"] = torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).flatten(1, 2)], dim=1)
    missing, unexpected = vit.load_state_dict(own, strict=False)
    assert sorted(missing) == ["last_norm.bias", "last_norm.weight"] and not unexpected
    return vit.eval()
