"""LandmarkNet: ResNet-18 backbone + regression or heatmap head, built from a ModelConfig."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import Tensor, nn

from napari_nfdp.core.backbone import ResNet18
from napari_nfdp.core.heads import HeatmapHead, RegressionHead
from napari_nfdp.core.preprocess import MIN_SIDE

VARIANTS: tuple[str, ...] = ("regression", "heatmap")


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must hold integers, got {value!r}")
    return int(value)


@dataclass
class ModelConfig:
    """What a LandmarkNet is: variant, landmark count, input size (H, W) and fit fraction."""

    variant: str
    num_landmarks: int
    input_size: tuple[int, int] = (512, 256)
    pyramid_fusion: bool = False
    fit_fraction: float = 0.9

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model variant {self.variant!r}; expected one of {VARIANTS}")
        self.num_landmarks = _as_int(self.num_landmarks, "num_landmarks")
        if self.num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {self.num_landmarks}")
        if not isinstance(self.input_size, list | tuple) or len(self.input_size) != 2:
            raise ValueError(f"input_size must be (height, width), got {self.input_size!r}")
        size = tuple(_as_int(side, "input_size") for side in self.input_size)
        if min(size) < MIN_SIDE:
            raise ValueError(
                f"input_size must be two ints >= {MIN_SIDE} (height, width), "
                f"got {self.input_size!r}"
            )
        self.input_size = size
        if not isinstance(self.pyramid_fusion, bool):
            raise ValueError(f"pyramid_fusion must be a bool, got {self.pyramid_fusion!r}")
        if self.pyramid_fusion and self.variant != "regression":
            raise ValueError("pyramid_fusion applies to the regression variant only")
        if not isinstance(self.fit_fraction, numbers.Real) or not 0.0 < self.fit_fraction <= 1.0:
            raise ValueError(f"fit_fraction must be in (0, 1], got {self.fit_fraction!r}")
        self.fit_fraction = float(self.fit_fraction)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (input_size as a list) suitable for checkpoints and JSON."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; ValueError on unknown or missing fields and bad values."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a dict, got {type(data).__name__}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {unknown}")
        missing = sorted({"variant", "num_landmarks"} - set(data))
        if missing:
            raise ValueError(f"model config lacks required fields: {missing}")
        return cls(**data)


class LandmarkNet(nn.Module):
    """forward(x (B, 1, H_in, W_in)) -> (mu (B, K, 2), sigma (B, K, 2)), normalised units."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNet18(in_channels=1)
        if config.variant == "regression":
            self.head: nn.Module = RegressionHead(config.num_landmarks, config.pyramid_fusion)
        else:
            self.head = HeatmapHead(config.num_landmarks)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (B, 1, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        return self.head(self.backbone(x), (int(height), int(width)))
