"""Training from scratch on a dataset folder (``python -m training fit``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from napari_nfdp.core.checkpoint import Checkpoint, load_checkpoint
from napari_nfdp.core.schema import default_landmark_names
from training.datasets import Sample, SampleSource, open_dataset
from training.loop import ProgressFn, TrainConfig, train

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 1024  # images are kept in memory at most this large (2x the input)


def split_validation(sources: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Seeded split of ``sources`` (or any items) into (train, validation); at least one of each
    when possible."""
    n = len(sources)
    n_val = min(n - 1, max(1, round(n * fraction))) if n > 1 and fraction > 0 else 0
    order = np.random.default_rng(seed).permutation(n)
    val = set(order[:n_val].tolist())
    return (
        [s for i, s in enumerate(sources) if i not in val],
        [s for i, s in enumerate(sources) if i in val],
    )


def load_samples(
    sources: Sequence[SampleSource], max_side: int | None, workers: int = 1
) -> list[Sample]:
    """Read every source into memory, reduced so its long side is at most ``max_side``,
    by ``workers`` threads (image decoding and resizing release the GIL)."""
    if workers <= 1:
        return [source.load(max_side=max_side) for source in sources]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda source: source.load(max_side=max_side), sources))


def fit(
    data: str | Path,
    out: str | Path,
    cfg: TrainConfig | None = None,
    *,
    val_data: str | Path | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    backbone_weights: str | Path | None = None,
    init_checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> Path:
    """Train a model on the training split of ``data``; return the best checkpoint.

    The validation set is ``val_data`` (its validation split), else the ``validation``
    split of ``data`` when it has one, else a seeded ``val_fraction`` of the training
    images. The test split is never read here. ``init_checkpoint`` starts from that
    model's weights (network and flow) with a fresh schedule; its architecture must be
    the one ``cfg`` describes.
    """
    cfg = cfg or TrainConfig()
    # Read the starting model before the images, so a bad path fails at once.
    base = load_checkpoint(init_checkpoint) if init_checkpoint is not None else None
    if base is not None and base.refiner is not None:
        log.warning(
            "%s has two stages: fit retrains stage 1 and writes a single-stage model; "
            "add stage 2 again with `python -m training refine --init RUN/best.pt`",
            init_checkpoint,
        )
    sources = list(open_dataset(data, split="training"))
    if limit is not None:
        sources = sources[:limit]
    if val_data is not None:
        val_sources = list(open_dataset(val_data, split="validation"))
    else:
        try:
            val_sources = list(open_dataset(data, split="validation"))
        except FileNotFoundError:
            val_sources = []
        if not val_sources:
            sources, val_sources = split_validation(sources, val_fraction, cfg.seed)
    if not sources:
        raise ValueError(f"no training images found in {data}")
    train_samples = load_samples(sources, max_side, cfg.num_workers)
    val_samples = load_samples(val_sources, max_side, cfg.num_workers)
    k = train_samples[0].landmarks.shape[0]
    summary = {  # with cfg, what ``fit --config`` needs to repeat the run (run_config.py)
        "source": str(data),
        "val_data": None if val_data is None else str(val_data),
        "val_fraction": val_fraction,
        "limit": limit,
        "max_side": max_side,
        "backbone_weights": None if backbone_weights is None else str(backbone_weights),
        "train_images": len(train_samples),
        "val_images": len(val_samples),
        "train_names": [s.name for s in train_samples][:1000],
    }
    init = None
    if base is not None:
        init = _initial_weights(base, init_checkpoint, cfg, k)
        summary["init_checkpoint"] = str(init_checkpoint)
    return train(
        cfg,
        train_samples,
        val_samples,
        out,
        landmark_names=default_landmark_names(k),
        init=init,
        backbone_weights=backbone_weights,
        resume=resume,
        data_summary=summary,
        progress=progress,
    )


def _initial_weights(
    base: Checkpoint, path: str | Path, cfg: TrainConfig, num_landmarks: int
) -> tuple[dict, dict | None]:
    """(network, flow) weights of ``base`` (read from ``path``), checked against ``cfg``."""
    wanted = cfg.model_config(num_landmarks)
    if base.config != wanted:
        raise ValueError(
            f"{path} is a {base.config} model; this run trains a {wanted} model. "
            "Pass the checkpoint's variant, input size, fit fraction and pyramid fusion."
        )
    return base.model_state, base.flow_state
