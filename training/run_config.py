"""Repeating a run: ``python -m training fit --config RUN/config.json --out NEW``.

``fit`` writes ``config.json`` into its run folder: ``train`` (the :class:`TrainConfig`) and
``data`` (the dataset and the options that chose its images). :func:`fit_defaults` turns it
into defaults of the ``fit`` options, so flags given on the command line override it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# config.json "data" key -> ``fit`` option (argparse dest)
DATA_OPTIONS = {
    "source": "data",
    "val_data": "val_data",
    "val_fraction": "val_fraction",
    "limit": "limit",
    "max_side": "max_side",
    "backbone_weights": "backbone_weights",
    "init_checkpoint": "init",
}


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A run's ``config.json`` (``path`` may be the run folder); ValueError if it is not one."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no run configuration {path}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the run configuration {path}: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise ValueError(f"{path} is not a training run's config.json (no 'train' settings)")
    return config


def train_config(config: dict[str, Any]):
    """The :class:`~training.loop.TrainConfig` saved in a run configuration."""
    from training.loop import TrainConfig

    try:
        return TrainConfig.from_dict(config["train"])
    except TypeError as error:
        raise ValueError(f"unknown training settings in the run configuration: {error}") from None


def fit_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The ``fit`` option values (by argparse dest) that repeat the run ``config`` describes.

    Settings without an option (the augmentation details, ``lr_end_factor``) come from
    :func:`train_config` when ``fit`` builds its configuration.
    """
    train = train_config(config)
    defaults: dict[str, Any] = {
        "variant": train.variant,
        "loss": train.loss,
        "input_size": list(train.input_size),
        "fit_fraction": train.fit_fraction,
        "pyramid_fusion": train.pyramid_fusion,
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "lr": train.lr,
        "seed": train.seed,
        "no_amp": not train.amp,
        "device": train.device,
        "workers": train.num_workers,
    }
    data = config.get("data") or {}
    defaults.update({dest: data[key] for key, dest in DATA_OPTIONS.items() if key in data})
    return defaults
