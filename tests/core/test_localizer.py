import numpy as np
import pytest
import torch

from napari_nfdp.core import checkpoint as checkpoint_module
from napari_nfdp.core import localizer as localizer_module
from napari_nfdp.core.checkpoint import CheckpointError, save_checkpoint
from napari_nfdp.core.localizer import Localizer, Prediction
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.preprocess import ImageError, apply_affine, fit_matrix, prepare_input
from napari_nfdp.core.schema import default_landmark_names

INPUT = (64, 32)
K = 7


@pytest.fixture(scope="module", params=["regression", "heatmap"])
def checkpoint_path(request, tmp_path_factory):
    torch.manual_seed(0)
    model = LandmarkNet(ModelConfig(request.param, K, INPUT))
    path = tmp_path_factory.mktemp(request.param) / "tiny.pt"
    return save_checkpoint(path, model, landmark_names=default_landmark_names(K))


@pytest.fixture(scope="module")
def localizer(checkpoint_path) -> Localizer:
    return Localizer.load(checkpoint_path, device="cpu")


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 4096, (300, 130)).astype(np.uint16),
        rng.normal(0, 1, (90, 200)).astype(np.float32),
        rng.integers(0, 256, (120, 80, 3)).astype(np.uint8),
        rng.integers(0, 256, (64, 48, 4)).astype(np.uint8),
    ]


def _check(prediction: Prediction, localizer: Localizer) -> None:
    assert prediction.landmarks.shape == (K, 2) and prediction.landmarks.dtype == np.float64
    assert prediction.sigma.shape == (K, 2) and prediction.sigma.dtype == np.float64
    assert np.isfinite(prediction.landmarks).all() and (prediction.sigma > 0).all()
    assert prediction.landmark_names == localizer.landmark_names == default_landmark_names(K)


def test_load_attributes(localizer, checkpoint_path):
    assert localizer.device == torch.device("cpu")
    assert localizer.config.input_size == INPUT
    assert localizer.checkpoint.config == localizer.config
    assert not localizer.model.training


def test_predict_single_images(localizer):
    for image in _images():
        _check(localizer.predict(image), localizer)


def test_predict_maps_network_output_back_exactly(localizer):
    image = _images()[0]
    prediction = localizer.predict(image)
    # Map back to the network input with the fit matrix and compare with a bare forward pass.
    fit = fit_matrix(image.shape, INPUT, localizer.config.fit_fraction)
    input_points = apply_affine(fit, prediction.landmarks)
    inputs, _ = prepare_input(image, INPUT, localizer.config.fit_fraction)
    with torch.no_grad():
        mu, sigma = localizer.model(torch.from_numpy(inputs)[None, None])
    expected = (mu[0].double().numpy() + 0.5) * np.array(INPUT)
    np.testing.assert_allclose(input_points, expected, atol=1e-6)
    expected_sigma = sigma[0].double().numpy() * np.array(INPUT) / fit[0, 0]
    np.testing.assert_allclose(prediction.sigma, expected_sigma, rtol=1e-6)


def test_predict_batch_matches_single(localizer):
    images = _images()
    batch = localizer.predict_batch(images, batch_size=3)
    assert len(batch) == len(images)
    for image, prediction in zip(images, batch, strict=True):
        _check(prediction, localizer)
        single = localizer.predict(image)
        np.testing.assert_allclose(prediction.landmarks, single.landmarks, atol=1e-3)
        np.testing.assert_allclose(prediction.sigma, single.sigma, rtol=1e-4)
    assert localizer.predict_batch([]) == []
    with pytest.raises(ValueError, match="batch_size"):
        localizer.predict_batch(images, batch_size=0)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.full((100, 100), np.nan, np.float32), "NaN"),
        (np.zeros((100,), np.uint8), "shape"),
        (np.zeros((2, 100, 100), np.uint8), "shape"),
        (np.zeros((20, 100), np.uint16), "too small"),
        (np.zeros((32, 8000), np.uint8), "too elongated"),  # was an IndexError
        (np.zeros((7400, 32), np.uint8), "too elongated"),
    ],
)
def test_bad_images(localizer, image, message):
    with pytest.raises(ImageError, match=message):
        localizer.predict(image)


def test_predict_batch_names_the_bad_image(localizer):
    images = _images()
    images.insert(2, np.zeros((32, 8000), np.uint8))
    with pytest.raises(ImageError, match=r"^image 2 of 5 \(shape \(32, 8000\)\): .*elongated"):
        localizer.predict_batch(images, batch_size=3)
    with pytest.raises(ImageError, match=r"^image 0 of 1 \(shape \(40, 40\)\): .*NaN"):
        localizer.predict_batch([np.full((40, 40), np.nan)])


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Localizer.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_text("hello")
    with pytest.raises(CheckpointError, match="corrupt"):
        Localizer.load(corrupt)


def test_missing_bundled_model(tmp_path, monkeypatch):
    monkeypatch.setattr(localizer_module, "DEFAULT_MODEL_PATH", tmp_path / "spine_default.pt")
    with pytest.raises(CheckpointError, match="bundled model is missing"):
        Localizer.load()


def test_default_path_is_used(checkpoint_path, monkeypatch):
    monkeypatch.setattr(localizer_module, "DEFAULT_MODEL_PATH", checkpoint_path)
    assert Localizer.load(device="cpu").config.input_size == INPUT


def test_default_model_path_location():
    path = checkpoint_module.DEFAULT_MODEL_PATH
    assert path.name == "spine_default.pt" and path.parent.name == "models"
    assert path.parent.parent.name == "napari_nfdp"


def test_device_choice(checkpoint_path, monkeypatch):
    assert localizer_module.resolve_device(None) == torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    with pytest.raises(ValueError, match="unknown device"):
        localizer_module.resolve_device("gpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert localizer_module.resolve_device(None) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        Localizer.load(checkpoint_path, device="cuda")
