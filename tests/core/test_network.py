import numpy as np
import pytest
import torch

from napari_nfdp.core.backbone import ResNet18, load_imagenet_weights
from napari_nfdp.core.heads import soft_argmax
from napari_nfdp.core.network import LandmarkNet, ModelConfig

INPUT = (64, 32)


def torchvision_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter/buffer names and shapes of torchvision's resnet18 (built from its architecture)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def batchnorm(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["conv1.weight"] = (64, 3, 7, 7)
    batchnorm("bn1", 64)
    previous = 64
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            in_channels = previous if block == 0 else channels
            shapes[f"{prefix}.conv1.weight"] = (channels, in_channels, 3, 3)
            batchnorm(f"{prefix}.bn1", channels)
            shapes[f"{prefix}.conv2.weight"] = (channels, channels, 3, 3)
            batchnorm(f"{prefix}.bn2", channels)
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (channels, previous, 1, 1)
                batchnorm(f"{prefix}.downsample.1", channels)
        previous = channels
    shapes["fc.weight"] = (1000, 512)
    shapes["fc.bias"] = (1000,)
    return shapes


def synthetic_imagenet_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in torchvision_resnet18_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.rand(shape, generator=generator)
    return state


def test_backbone_keys_match_torchvision():
    expected = {k: v for k, v in torchvision_resnet18_shapes().items() if not k.startswith("fc.")}
    expected["conv1.weight"] = (64, 1, 7, 7)
    actual = {k: tuple(v.shape) for k, v in ResNet18(in_channels=1).state_dict().items()}
    assert actual == expected


def test_backbone_feature_strides_and_channels():
    features = ResNet18().eval()(torch.zeros(2, 1, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (2, 64, 16, 24),
        (2, 128, 8, 12),
        (2, 256, 4, 6),
        (2, 512, 2, 3),
    ]


@pytest.mark.parametrize("as_path", [False, True])
def test_load_imagenet_weights(tmp_path, as_path):
    state = synthetic_imagenet_state()
    source = state
    if as_path:
        source = tmp_path / "resnet18.pth"
        torch.save(state, source)
    backbone = ResNet18()
    load_imagenet_weights(backbone, source)
    loaded = backbone.state_dict()
    torch.testing.assert_close(loaded["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(
        loaded["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"]
    )
    assert int(loaded["bn1.num_batches_tracked"]) == 7


def test_load_imagenet_weights_errors(tmp_path):
    state = synthetic_imagenet_state()
    del state["layer2.0.downsample.0.weight"]
    with pytest.raises(ValueError, match="resnet18"):
        load_imagenet_weights(ResNet18(), state)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read"):
        load_imagenet_weights(ResNet18(), bad)


@pytest.mark.parametrize(
    ("variant", "fusion"), [("regression", False), ("regression", True), ("heatmap", False)]
)
@pytest.mark.parametrize("k", [68, 19])
def test_forward_shapes_and_ranges(variant, fusion, k):
    torch.manual_seed(0)
    model = LandmarkNet(ModelConfig(variant, k, INPUT, pyramid_fusion=fusion)).eval()
    with torch.no_grad():
        mu, sigma = model(torch.randn(3, 1, *INPUT))
    assert mu.shape == (3, k, 2) and sigma.shape == (3, k, 2)
    assert torch.isfinite(mu).all()
    assert (sigma > 0).all() and (sigma < 1).all()
    assert mu.abs().max() <= 0.5 + 1e-6


def test_heatmap_soft_argmax_finds_a_peak():
    logits = torch.full((1, 1, 16, 8), -50.0)
    logits[0, 0, 5, 3] = 50.0
    mu = soft_argmax(logits, (64, 32), stride=4)
    torch.testing.assert_close(mu[0, 0], torch.tensor([4 * 5 / 64 - 0.5, 4 * 3 / 32 - 0.5]))


def test_regression_backward_reaches_backbone():
    model = LandmarkNet(ModelConfig("regression", 4, INPUT, pyramid_fusion=True))
    mu, sigma = model(torch.randn(2, 1, *INPUT))
    (mu.sum() + sigma.sum()).backward()
    assert model.backbone.conv1.weight.grad is not None


def test_config_dict_round_trip_and_errors():
    config = ModelConfig("heatmap", 19, (96, 64), fit_fraction=0.8)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["input_size"] == [96, 64]
    assert ModelConfig("regression", np.int64(3), [np.int64(64), 32]).input_size == (64, 32)
    for bad in (
        {"variant": "vit", "num_landmarks": 3},
        {"variant": "heatmap", "num_landmarks": 0},
        {"variant": "heatmap", "num_landmarks": 3, "input_size": [16, 64]},
        {"variant": "heatmap", "num_landmarks": 3, "input_size": 64},
        {"variant": "heatmap", "num_landmarks": 3.5},
        {"variant": "heatmap", "num_landmarks": 3, "fit_fraction": None},
        {"variant": "heatmap", "num_landmarks": 3, "pyramid_fusion": True},
        {"variant": "regression", "num_landmarks": 3, "fit_fraction": 1.5},
        {"variant": "regression", "num_landmarks": 3, "colour": True},
        {"num_landmarks": 3},
    ):
        with pytest.raises(ValueError):
            ModelConfig.from_dict(bad)
    with pytest.raises(ValueError, match="dict"):
        ModelConfig.from_dict(["regression", 3])


def test_wrong_input_shape():
    model = LandmarkNet(ModelConfig("regression", 2, INPUT))
    with pytest.raises(ValueError, match="B, 1, H, W"):
        model(torch.zeros(1, 3, *INPUT))
