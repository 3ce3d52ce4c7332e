"""Self-describing model checkpoints: config, landmark names, weights, provenance, metrics."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import napari_nfdp
from napari_nfdp.core import preprocess
from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.refine import RefineNet, RefinerConfig
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES

FORMAT_TAG = "napari-nfdp-checkpoint"
FORMAT_VERSION = 1
DEFAULT_MODEL_PATH: Path = Path(__file__).resolve().parent.parent / "models" / "spine_default.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message saying why."""


def normalisation_description(config: ModelConfig) -> dict[str, Any]:
    """How images must be preprocessed for a model (stored in every checkpoint)."""
    return {
        "grey": "BT.709 luminance of colour images",
        "intensity": "percentile",
        "low_percentile": preprocess.LOW_PERCENTILE,
        "high_percentile": preprocess.HIGH_PERCENTILE,
        "range": [-0.5, 0.5],
        "pad_value": preprocess.PAD_VALUE,
        "fit": "uniform scale, centred",
        "fit_fraction": config.fit_fraction,
        "coordinates": "(row, col), r_in / H_in - 0.5",
    }


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``model_state`` tensors are float32 on the CPU."""

    config: ModelConfig
    landmark_names: tuple[str, ...]
    model_state: dict[str, torch.Tensor]
    flow_state: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    refiner: dict[str, Any] | None = None  # stage 2: {"config", "state", "flow_state"}

    def build_refiner_net(self) -> RefineNet | None:
        """The float32 stage-2 network in eval mode, or None for a single-stage checkpoint."""
        if self.refiner is None:
            return None
        net = RefineNet(RefinerConfig.from_dict(self.refiner["config"]))
        net.load_state_dict(self.refiner["state"], strict=True)
        return net.float().eval()

    def build_model(self) -> LandmarkNet:
        """A float32 LandmarkNet with the stored weights, in eval mode."""
        model = LandmarkNet(self.config)
        try:
            model.load_state_dict(self.model_state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"weights do not fit the model config: {error}") from error
        return model.float().eval()


def _plain(value: Any, where: str) -> Any:
    """Convert numpy / Path values to types that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"cannot store {type(value).__name__} at {where} in a checkpoint")


def save_checkpoint(
    path: str | Path,
    model: LandmarkNet,
    *,
    landmark_names: Sequence[str],
    flow_state: dict | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
    half: bool = False,
    refiner: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename); returns the path.

    ``half=True`` stores floating-point weights as float16 (loading gives float32 again).
    ``refiner`` is the stage-2 part (:func:`refiner_part`), None for a single-stage model.
    """
    path = Path(path)
    names = tuple(str(name) for name in landmark_names)
    if len(names) != model.config.num_landmarks:
        raise ValueError(
            f"{len(names)} landmark names for a model with {model.config.num_landmarks} landmarks"
        )
    payload = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "landmark_names": list(names),
        "normalisation": normalisation_description(model.config),
        "model_state": _stored(model.state_dict(), half),
        "flow_state": _plain(flow_state, "flow_state"),
        "refiner": None
        if refiner is None
        else {
            "config": _plain(refiner["config"], "refiner.config"),
            "state": _stored(refiner["state"], half),
            "flow_state": _plain(refiner.get("flow_state"), "refiner.flow_state"),
        },
        "training": _plain(training or {}, "training"),
        "metrics": _plain(metrics or {}, "metrics"),
        "code_version": napari_nfdp.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "half": bool(half),
    }
    atomic_write(path, lambda stream: torch.save(payload, stream))
    return path


def _stored(state: Mapping[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    """CPU copies of a state dict's tensors, floating ones as float16 when ``half``."""
    stored = {}
    for key, tensor in state.items():
        tensor = tensor.detach().to("cpu", copy=True)
        stored[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    return stored


def refiner_part(
    net: torch.nn.Module, config: RefinerConfig, flow_state: dict | None = None
) -> dict[str, Any]:
    """The stage-2 part of a checkpoint (for ``save_checkpoint(refiner=...)``)."""
    return {"config": config.to_dict(), "state": net.state_dict(), "flow_state": flow_state}


def update_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Merge ``metrics`` into a checkpoint's metrics and rewrite it (atomically)."""
    ckpt = load_checkpoint(path)
    return save_checkpoint(
        path,
        ckpt.build_model(),
        landmark_names=ckpt.landmark_names,
        flow_state=ckpt.flow_state,
        training=ckpt.training,
        metrics={**ckpt.metrics, **metrics},
        half=bool(ckpt.meta.get("half", False)),
        refiner=ckpt.refiner,
    )


def _check_state_fits(state: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    """CheckpointError unless ``state`` has exactly the keys and tensor shapes of ``expected``
    (a state dict built on the meta device), naming ``what`` the weights should fit."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit {what} "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    for key, tensor in expected.items():
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            shape = getattr(state[key], "shape", type(state[key]).__name__)
            raise CheckpointError(
                f"weights do not fit {what}: {key} is {shape}, expected {tensor.shape}"
            )


def _non_finite(value: Any, where: str) -> str | None:
    """Where in ``value`` (nested dicts/lists) a floating tensor holds NaN or inf, else None."""
    if isinstance(value, torch.Tensor):
        finite = not value.is_floating_point() or bool(torch.isfinite(value).all())
        return None if finite else where
    items: Any = ()
    if isinstance(value, Mapping):
        items = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    for name, item in items:
        found = _non_finite(item, name)
        if found is not None:
            return found
    return None


def _refuse_non_finite(path: Path, parts: dict[str, Any]) -> None:
    """CheckpointError naming the first NaN or infinite weight among ``parts`` (name: state)."""
    for name, part in parts.items():
        where = _non_finite(part or {}, name)
        if where is not None:
            raise CheckpointError(
                f"{path} has weights that are not finite numbers (NaN or infinity) in {where}; "
                "it was not loaded"
            )


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; every problem raises CheckpointError.

    Only tensors and plain data are unpickled (``weights_only=True``); a file holding anything
    else, or weights with NaN or infinity in ``model_state`` or ``flow_state``, is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for unreadable files
        text = str(error).lower()
        if (
            isinstance(error, pickle.UnpicklingError)
            or "weights_only" in text
            or "weights only" in text
        ):
            # torch's text would advise loading with weights_only=False: never suggest that
            raise CheckpointError(
                f"{path} is not a napari-nfdp checkpoint, or it holds objects other than "
                "tensors and plain data; it was not loaded"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or not a checkpoint file): {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_TAG:
        raise CheckpointError(f"{path} is not a napari-nfdp checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this napari-nfdp "
            f"({napari_nfdp.__version__}) reads version {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(payload.get("config"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid model config: {error}") from error
    names = payload.get("landmark_names")
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path} has no valid list of landmark names")
    if len(names) != config.num_landmarks:
        raise CheckpointError(
            f"{path} names {len(names)} landmarks but its model predicts {config.num_landmarks}"
        )
    state = payload.get("model_state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no model weights")
    with torch.device("meta"):
        _check_state_fits(state, LandmarkNet(config).state_dict(), "the model config")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    flow_state = payload.get("flow_state")
    if flow_state is not None and not isinstance(flow_state, dict):
        raise CheckpointError(f"{path} has an invalid flow state")
    _refuse_non_finite(path, {"model_state": state, "flow_state": flow_state})
    refiner = _load_refiner(path, payload.get("refiner"))
    if refiner is not None and tuple(names) != SPINE_LANDMARK_NAMES:
        raise CheckpointError(f"{path} has a stage 2, which needs the 68-landmark spine schema")
    meta_keys = ("normalisation", "code_version", "created", "half", "format_version")
    return Checkpoint(
        config=config,
        landmark_names=tuple(names),
        model_state=state,
        flow_state=flow_state,
        training=dict(payload.get("training") or {}),
        metrics=dict(payload.get("metrics") or {}),
        meta={key: payload.get(key) for key in meta_keys},
        refiner=refiner,
    )


def _load_refiner(path: Path, part: Any) -> dict[str, Any] | None:
    """The validated stage-2 part of a checkpoint (float32 weights), None when absent."""
    if part is None:
        return None
    if not isinstance(part, dict) or not isinstance(part.get("state"), dict):
        raise CheckpointError(f"{path} has an invalid stage-2 (refiner) part")
    try:
        config = RefinerConfig.from_dict(part.get("config"))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid refiner config: {error}") from error
    state = part["state"]
    with torch.device("meta"):
        _check_state_fits(state, RefineNet(config).state_dict(), "the stage-2 refiner config")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    flow_state = part.get("flow_state")
    if flow_state is not None and not isinstance(flow_state, dict):
        raise CheckpointError(f"{path} has an invalid stage-2 flow state")
    _refuse_non_finite(path, {"refiner.state": state, "refiner.flow_state": flow_state})
    return {"config": config.to_dict(), "state": state, "flow_state": flow_state}
