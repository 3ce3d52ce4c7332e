import math
import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_nfdp
from napari_nfdp.core.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.schema import default_landmark_names

INPUT = (64, 32)


@pytest.fixture(scope="module")
def model() -> LandmarkNet:
    torch.manual_seed(0)
    return LandmarkNet(ModelConfig("heatmap", 5, INPUT, fit_fraction=0.8)).eval()


@pytest.fixture(scope="module")
def good_payload(model, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("good") / "good.pt"
    save_checkpoint(path, model, landmark_names=default_landmark_names(5))
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("half", [False, True])
def test_round_trip(tmp_path, model, half):
    names = default_landmark_names(5)
    flow = {"coupling.0.weight": torch.randn(3, 2)}
    path = save_checkpoint(
        tmp_path / "sub" / "model.pt",
        model,
        landmark_names=names,
        flow_state=flow,
        training={"epochs": 3, "loss": np.float32(0.5), "history": np.arange(3)},
        metrics={"val_mre": 12.5},
        half=half,
    )
    assert path.is_file() and list(path.parent.iterdir()) == [path]
    checkpoint = load_checkpoint(path)
    assert checkpoint.config == model.config
    assert checkpoint.landmark_names == names
    assert checkpoint.training == {"epochs": 3, "loss": 0.5, "history": [0, 1, 2]}
    assert checkpoint.metrics == {"val_mre": 12.5}
    torch.testing.assert_close(
        checkpoint.flow_state["coupling.0.weight"], flow["coupling.0.weight"]
    )
    assert checkpoint.meta["code_version"] == napari_nfdp.__version__
    assert checkpoint.meta["format_version"] == FORMAT_VERSION
    assert checkpoint.meta["half"] is half
    assert checkpoint.meta["normalisation"]["fit_fraction"] == 0.8
    assert "T" in checkpoint.meta["created"]
    rebuilt = checkpoint.build_model()
    assert not rebuilt.training
    for key, value in model.state_dict().items():
        loaded = rebuilt.state_dict()[key]
        if value.is_floating_point():
            assert loaded.dtype == torch.float32
            torch.testing.assert_close(
                loaded, value, atol=2e-3 if half else 0, rtol=1e-3 if half else 0
            )
        else:
            assert torch.equal(loaded, value)
    if half:
        raw = torch.load(path, weights_only=True)["model_state"]
        assert raw["backbone.conv1.weight"].dtype == torch.float16


def test_save_rejects_wrong_name_count(tmp_path, model):
    with pytest.raises(ValueError, match="3 landmark names"):
        save_checkpoint(tmp_path / "x.pt", model, landmark_names=("a", "b", "c"))
    with pytest.raises(TypeError, match="metrics"):
        save_checkpoint(tmp_path / "x.pt", model, landmark_names="abcde", metrics={"f": object()})
    assert not list(tmp_path.iterdir())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path)


def test_corrupt_and_foreign_files(tmp_path, model):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt is not a napari-nfdp checkpoint"):
        load_checkpoint(garbage)
    good = save_checkpoint(tmp_path / "good.pt", model, landmark_names=default_landmark_names(5))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(truncated)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a napari-nfdp checkpoint"):
        load_checkpoint(plain)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": FORMAT_VERSION + 1}, "format version"),
        ({"config": {"variant": "transformer", "num_landmarks": 5}}, "unknown model variant"),
        ({"config": "regression"}, "invalid model config"),
        ({"landmark_names": ["a", "b"]}, "names 2 landmarks"),
        ({"landmark_names": None}, "landmark names"),
        ({"model_state": None}, "no model weights"),
        ({"config": {"variant": "heatmap", "num_landmarks": 6}}, "names 5"),
        ({"config": {"variant": "regression", "num_landmarks": 5}}, "do not fit"),
        ({"flow_state": [1, 2]}, "flow state"),
    ],
)
def test_invalid_contents(tmp_path, good_payload, change, message):
    path = tmp_path / "bad.pt"
    torch.save({**good_payload, **change}, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_weights_of_wrong_shape(tmp_path, good_payload):
    state = {**good_payload["model_state"], "head.out.weight": torch.zeros(7, 64, 1, 1)}
    payload = {**good_payload, "model_state": state}
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="head.out.weight"):
        load_checkpoint(path)


class _RunsCode:
    """Unpickling this would run a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_checkpoint_that_would_run_code_is_refused_plainly(tmp_path, good_payload, writer):
    marker = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save({**good_payload, "metrics": _RunsCode(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert not marker.exists()  # the command did not run
    message = str(info.value)
    assert message == (
        f"{path} is not a napari-nfdp checkpoint, or it holds objects other than tensors and "
        "plain data; it was not loaded"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice hidden
    assert "weights_only" not in message and "weights only" not in message.lower()


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [
        ("model_state", "backbone.conv1.weight", math.nan),
        ("model_state", "head.out.bias", math.inf),
        ("flow_state", "coupling.0.weight", -math.inf),
    ],
)
def test_non_finite_weights_are_refused(tmp_path, good_payload, part, key, value):
    state = {k: v.clone() for k, v in (good_payload[part] or {}).items()}
    state[key] = state.get(key, torch.zeros(3, 2)).clone()
    state[key].view(-1)[1] = value
    path = tmp_path / "nonfinite.pt"
    torch.save({**good_payload, part: state}, path)
    with pytest.raises(
        CheckpointError, match=f"nonfinite.pt has weights that are not finite.*{key}"
    ):
        load_checkpoint(path)


def test_non_finite_half_weights_are_refused(tmp_path, model):
    broken = LandmarkNet(model.config)
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.backbone.conv1.weight[0, 0, 0, 0] = math.nan
    path = save_checkpoint(
        tmp_path / "half.pt", broken, landmark_names=default_landmark_names(5), half=True
    )
    with pytest.raises(CheckpointError, match="backbone.conv1.weight"):
        load_checkpoint(path)
    save_checkpoint(path, model, landmark_names=default_landmark_names(5), half=True)
    assert load_checkpoint(path).landmark_names == default_landmark_names(5)  # finite: fine
