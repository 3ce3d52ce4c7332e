"""Few-image refit of a trained model on a user's corrected annotations (the GUI's button)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, load_checkpoint, update_metrics
from napari_nfdp.core.localizer import resolve_device
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from training.datasets import Sample, sample_from_array
from training.fit import DEFAULT_MAX_SIDE, split_validation
from training.loop import ProgressFn, StopFn, TrainConfig, train, validate

FINETUNE_STEPS = 60  # default optimisation steps when ``epochs`` is not given
FINETUNE_LR = 2e-4


def _replay_samples(n: int, seed: int) -> list[Sample]:
    from napari_nfdp.core.synthetic import synthesize_spine

    return [
        sample_from_array(c.image, c.landmarks, f"replay-{c.seed}", DEFAULT_MAX_SIDE)
        for c in (synthesize_spine(seed + 10_000 + i) for i in range(n))
    ]


def finetune(
    base_checkpoint: str | Path | None,
    images: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    out: str | Path,
    epochs: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    replay: int = 0,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    device: str | None = None,
) -> Path:
    """Refit backbone and flow of ``base_checkpoint`` on corrected images; return the checkpoint.

    ``landmarks`` are (K, 2) (row, col) arrays, NaN where a point is missing. Some images are
    held out (when there are at least three) to measure validation MRE before and after;
    both are reported through ``progress`` and stored in the checkpoint's metrics
    (``val_mre_pct_before`` / ``val_mre_pct_after``, percent of image height) so the caller
    can publish only an improvement. ``replay`` synthetic spine cases are mixed in against
    forgetting. ``should_stop`` is polled between steps; stopping raises
    ``TrainingCancelled`` and writes no checkpoint.
    """
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} landmark sets")
    if not images:
        raise ValueError("fine-tuning needs at least one corrected image")
    base = load_checkpoint(base_checkpoint or DEFAULT_MODEL_PATH)
    k = base.config.num_landmarks
    samples = []
    for i, (image, points) in enumerate(zip(images, landmarks, strict=True)):
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (k, 2):
            raise ValueError(f"image {i}: expected ({k}, 2) landmarks, got {points.shape}")
        if not np.isfinite(points).all(axis=1).any():
            raise ValueError(f"image {i} has no visible landmarks")
        samples.append(sample_from_array(image, points, f"image-{i}", DEFAULT_MAX_SIDE))

    train_idx, val_idx = split_validation(
        list(range(len(samples))), holdout_fraction if len(samples) >= 3 else 0.0, seed
    )
    train_samples = [samples[i] for i in train_idx]
    val_samples = [samples[i] for i in val_idx] or train_samples
    if replay and base.landmark_names == SPINE_LANDMARK_NAMES:
        train_samples = train_samples + _replay_samples(replay, seed)

    cfg = TrainConfig.from_dict(base.training.get("config", {})) if base.training else TrainConfig()
    cfg.variant = base.config.variant
    cfg.input_size = tuple(base.config.input_size)
    cfg.fit_fraction = base.config.fit_fraction
    cfg.pyramid_fusion = base.config.pyramid_fusion
    cfg.batch_size = min(8, len(train_samples))
    cfg.lr = FINETUNE_LR
    cfg.device = device
    cfg.seed = seed
    cfg.amp = True
    steps_per_epoch = math.ceil(len(train_samples) / cfg.batch_size)
    cfg.epochs = epochs or max(3, math.ceil(FINETUNE_STEPS / steps_per_epoch))

    net = base.build_model().to(resolve_device(device))
    before = validate(net, val_samples, base.config, next(net.parameters()).device).mre_pct
    if progress is not None:
        progress({"event": "baseline", "val_mre_pct": before, "holdout_images": len(val_idx)})
    best = train(
        cfg,
        train_samples,
        val_samples,
        out,
        landmark_names=base.landmark_names,
        init=(base.model_state, base.flow_state),
        keep_resume_state=False,
        data_summary={
            "base_checkpoint": str(base_checkpoint or "bundled default"),
            "corrected_images": len(samples),
            "holdout_images": len(val_idx),
            "replay_images": replay,
        },
        progress=progress,
        should_stop=should_stop,
    )
    after = float(load_checkpoint(best).metrics.get("val_mre_pct", float("nan")))
    update_metrics(
        best,
        {
            "val_mre_pct_before": before,
            "val_mre_pct_after": after,
            "holdout_images": len(val_idx),
            "corrected_images": len(samples),
        },
    )
    if progress is not None:
        progress({"event": "done", "val_mre_pct_before": before, "val_mre_pct_after": after})
    return best
