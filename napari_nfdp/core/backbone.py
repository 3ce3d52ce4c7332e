"""ResNet-18 feature extractor with torchvision-compatible parameter names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
STAGE_STRIDES: tuple[int, ...] = (4, 8, 16, 32)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet18(nn.Module):
    """ResNet-18 without the classifier; ``forward`` returns [C2, C3, C4, C5].

    C2..C5 have strides 4/8/16/32 and 64/128/256/512 channels.
    """

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        previous = 64
        for index, channels in enumerate(STAGE_CHANNELS, start=1):
            stride = 1 if index == 1 else 2
            stage = nn.Sequential(
                BasicBlock(previous, channels, stride), BasicBlock(channels, channels)
            )
            self.add_module(f"layer{index}", stage)
            previous = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features


def load_imagenet_weights(
    backbone: ResNet18, state_dict_or_path: Mapping[str, Tensor] | str | Path
) -> None:
    """Load a torchvision resnet18 state dict (or a .pth file holding one) into ``backbone``.

    ``fc.*`` entries are ignored; 3-channel ``conv1`` weights are summed to the backbone's single
    input channel. Raises ValueError when the weights do not fit.
    """
    if isinstance(state_dict_or_path, str | Path):
        path = Path(state_dict_or_path)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for unreadable files
            raise ValueError(f"cannot read ImageNet weights from {path}: {error}") from error
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path} does not hold a state dict")
        state_dict_or_path = loaded
    state = {key: value for key, value in state_dict_or_path.items() if not key.startswith("fc.")}
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.shape[1] != backbone.in_channels:
        if backbone.in_channels != 1:
            raise ValueError(
                f"conv1 has {conv1.shape[1]} input channels; the backbone expects "
                f"{backbone.in_channels}"
            )
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True)
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"not a torchvision resnet18 state dict: {error}") from error
