"""Prediction heads: (mu, sigma) per landmark from the backbone's [C2, C3, C4, C5].

mu is in normalised input coordinates (row, col) = (r_in / H_in - 0.5, c_in / W_in - 0.5);
sigma is in the same units, in (0, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_nfdp.core.backbone import STAGE_CHANNELS, STAGE_STRIDES

FUSION_CHANNELS = 128
HEATMAP_CHANNELS = 64
SIGMA_FLOOR = 1e-9  # as in the reference: keeps log(sigma) finite


def global_pool(feature: Tensor) -> Tensor:
    """Global average pooling (B, C, H, W) -> (B, C)."""
    return feature.mean(dim=(2, 3))


class NormalisedLinear(nn.Module):
    """y = W x / ||x||_2 + b, with small Xavier-initialised weights (gain 0.01)."""

    def __init__(self, in_features: int, out_features: int, gain: float = 0.01) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.xavier_uniform_(self.weight, gain=gain)

    def forward(self, x: Tensor) -> Tensor:
        unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return F.linear(unit, self.weight, self.bias)


class SigmaHead(nn.Module):
    """Per-landmark, per-axis scale in (0, 1) from pooled C5 (never exactly 0: the loss logs it)."""

    def __init__(self, num_landmarks: int) -> None:
        super().__init__()
        self.num_landmarks = num_landmarks
        self.linear = nn.Linear(STAGE_CHANNELS[-1], 2 * num_landmarks)

    def forward(self, pooled_c5: Tensor) -> Tensor:
        sigma = torch.sigmoid(self.linear(pooled_c5)) + SIGMA_FLOOR
        return sigma.view(-1, self.num_landmarks, 2)


class PyramidFusion(nn.Module):
    """FPN-style top-down fusion of C3..C5, each level globally pooled and concatenated."""

    out_features = 3 * FUSION_CHANNELS

    def __init__(self) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, FUSION_CHANNELS, 1) for c in STAGE_CHANNELS[1:])
        self.smooth = nn.ModuleList(
            nn.Conv2d(FUSION_CHANNELS, FUSION_CHANNELS, 3, padding=1) for _ in STAGE_CHANNELS[1:]
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        pooled = []
        top: Tensor | None = None
        for lateral, smooth, feature in zip(
            reversed(self.lateral), reversed(self.smooth), reversed(features[1:]), strict=True
        ):
            level = lateral(feature)
            if top is not None:
                level = level + F.interpolate(top, size=level.shape[-2:], mode="nearest")
            top = level
            pooled.append(global_pool(smooth(level)))
        return torch.cat(pooled, dim=1)


class RegressionHead(nn.Module):
    """Pooled C5 (optionally with fused C3..C5) -> normalised-linear mu; sigma from pooled C5."""

    def __init__(self, num_landmarks: int, pyramid_fusion: bool = False) -> None:
        super().__init__()
        self.num_landmarks = num_landmarks
        self.fusion = PyramidFusion() if pyramid_fusion else None
        in_features = STAGE_CHANNELS[-1] + (PyramidFusion.out_features if pyramid_fusion else 0)
        self.mu = NormalisedLinear(in_features, 2 * num_landmarks)
        self.sigma = SigmaHead(num_landmarks)

    def forward(self, features: list[Tensor], input_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        pooled = global_pool(features[-1])
        vector = pooled if self.fusion is None else torch.cat([pooled, self.fusion(features)], 1)
        mu = self.mu(vector).view(-1, self.num_landmarks, 2)
        return mu, self.sigma(pooled)


def soft_argmax(logits: Tensor, input_size: tuple[int, int], stride: int) -> Tensor:
    """Expected (row, col) of softmax(logits over H*W), normalised to the network input.

    Heatmap pixel j is centred on input pixel ``stride * j`` (the receptive-field centre).
    """
    batch, channels, height, width = logits.shape
    probs = torch.softmax(logits.float().flatten(2), dim=-1).view(batch, channels, height, width)
    rows = torch.arange(height, device=logits.device, dtype=probs.dtype) * stride
    cols = torch.arange(width, device=logits.device, dtype=probs.dtype) * stride
    row = (probs.sum(dim=3) * rows).sum(dim=2) / input_size[0] - 0.5
    col = (probs.sum(dim=2) * cols).sum(dim=2) / input_size[1] - 0.5
    return torch.stack([row, col], dim=-1)


class HeatmapHead(nn.Module):
    """Semantic-FPN head at stride 4 -> K heatmaps -> soft-argmax; sigma from pooled C5."""

    def __init__(self, num_landmarks: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, HEATMAP_CHANNELS, 1),
                nn.Conv2d(HEATMAP_CHANNELS, HEATMAP_CHANNELS, 3, padding=1, bias=False),
                nn.BatchNorm2d(HEATMAP_CHANNELS),
                nn.ReLU(inplace=True),
            )
            for channels in STAGE_CHANNELS
        )
        self.out = nn.Conv2d(HEATMAP_CHANNELS, num_landmarks, 1)
        self.sigma = SigmaHead(num_landmarks)

    def heatmap_logits(self, features: list[Tensor]) -> Tensor:
        """Un-normalised heatmaps (B, K, H/4, W/4)."""
        fused = self.levels[0](features[0])
        size = fused.shape[-2:]
        for level, feature in zip(self.levels[1:], features[1:], strict=True):
            fused = fused + F.interpolate(
                level(feature), size=size, mode="bilinear", align_corners=False
            )
        return self.out(fused)

    def forward(self, features: list[Tensor], input_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        mu = soft_argmax(self.heatmap_logits(features), input_size, STAGE_STRIDES[0])
        return mu, self.sigma(global_pool(features[-1]))
