"""Evaluation metrics: radial errors, MRE, SDR and SMAPE of Cobb angles (NaN-aware)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def radial_errors(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float] | None = None
) -> np.ndarray:
    """Euclidean distance per landmark between (..., K, 2) (row, col) arrays.

    ``spacing`` (row_mm, col_mm) scales each axis first (errors in mm); without it errors are in
    pixels. The result has shape (..., K) and is NaN where ``pred`` or ``gt`` is missing.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim < 2 or pred.shape[-1] != 2:
        raise ValueError(f"pred and gt must share a (..., K, 2) shape: {pred.shape}, {gt.shape}")
    diff = pred - gt
    if spacing is not None:
        diff = diff * np.asarray(spacing, dtype=np.float64)
    return np.sqrt((diff * diff).sum(axis=-1))


def _finite(errors: np.ndarray | Iterable[float]) -> np.ndarray:
    values = np.asarray(errors, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def _mean_finite(errors: np.ndarray) -> float:
    values = _finite(errors)
    return float(values.mean()) if values.size else float("nan")


def mre(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float] | None = None) -> float:
    """Mean radial error over the landmarks present in both; NaN if there are none."""
    return _mean_finite(radial_errors(pred, gt, spacing))


def sdr(errors: np.ndarray, radii: Iterable[float]) -> dict[float, float]:
    """Successful detection rate: for each radius, percent of finite errors <= radius.

    NaN errors (missing landmarks) are left out of the count; with no finite error every
    rate is NaN.
    """
    values = _finite(errors)
    rates = {}
    for radius in radii:
        hit = np.count_nonzero(values <= radius)
        rates[float(radius)] = 100.0 * hit / values.size if values.size else float("nan")
    return rates


def smape(pred_angles: np.ndarray, gt_angles: np.ndarray) -> float:
    """Symmetric mean absolute percentage error of Cobb angles, in percent.

    Mean over images of sum_j |pred_j - gt_j| / sum_j (pred_j + gt_j), times 100. Inputs are
    (N, A) non-negative angles, usually A = 3 (one (A,) row is accepted). An image whose sums
    are both zero counts 0; images with a non-finite angle are skipped (NaN if none is left).
    """
    pred = np.atleast_2d(np.asarray(pred_angles, dtype=np.float64))
    gt = np.atleast_2d(np.asarray(gt_angles, dtype=np.float64))
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"angle arrays must share an (N, A) shape: {pred.shape}, {gt.shape}")
    usable = np.isfinite(pred).all(axis=1) & np.isfinite(gt).all(axis=1)
    pred, gt = pred[usable], gt[usable]
    if (pred < 0).any() or (gt < 0).any():
        raise ValueError("Cobb angles must be non-negative")
    if not usable.any():
        return float("nan")
    num = np.abs(pred - gt).sum(axis=1)
    den = (pred + gt).sum(axis=1)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(100.0 * ratio.mean())


def summarise(errors: np.ndarray, radii: Iterable[float] = ()) -> dict[str, float]:
    """Flat, JSON-friendly summary: ``mre``, ``count`` of finite errors, ``sdr_<radius>``."""
    summary = {"mre": _mean_finite(errors), "count": int(_finite(errors).size)}
    for radius, rate in sdr(errors, radii).items():
        summary[f"sdr_{radius:g}"] = rate
    return summary
