"""Evaluation of a checkpoint on a dataset split: MRE, SDR, Cobb angles and SMAPE."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp.core.cobb import CobbError, cobb_angles
from napari_nfdp.core.localizer import Localizer
from training.datasets import open_dataset
from training.metrics import radial_errors, sdr, smape

SPINE_K = 68
ANGLES = ("pt", "mt", "tl")


def _angles(landmarks: np.ndarray, height: float) -> np.ndarray | None:
    try:
        result = cobb_angles(landmarks, height)
    except CobbError:
        return None
    return np.array([result.pt, result.mt, result.tl])


def evaluate(
    checkpoint: str | Path | None,
    data: str | Path,
    *,
    split: str = "test",
    radii: Sequence[float] | None = None,
    device: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split`` of ``data``; returns a summary and per-image rows.

    Errors are in pixels of the original images, in mm where the spacing is known, and in
    percent of the image height. SDR radii are in mm when every image has a spacing, else
    in percent of image height (defaults: 2, 2.5, 3, 4 mm or 1, 2 %).
    """
    loc = Localizer.load(checkpoint, device=device)
    sources = list(open_dataset(data, split=split))[:limit]
    if not sources:
        raise ValueError(f"no images in split {split!r} of {data}")
    rows, px, pct, mm, cobb_pred, cobb_gt = [], [], [], [], [], []
    for source in sources:
        sample = source.load(max_side=None)
        pred = loc.predict(sample.image)
        if pred.landmarks.shape != sample.landmarks.shape:
            raise ValueError(
                f"model predicts {pred.landmarks.shape[0]} landmarks, "
                f"{sample.name} has {sample.landmarks.shape[0]}"
            )
        height = sample.image.shape[0]
        err = radial_errors(pred.landmarks, sample.landmarks)
        row: dict[str, Any] = {"image": sample.name, "mre_px": float(np.nanmean(err))}
        px.append(err)
        pct.append(err / height * 100.0)
        if sample.spacing is not None:
            err_mm = radial_errors(pred.landmarks, sample.landmarks, spacing=sample.spacing)
            mm.append(err_mm)
            row["mre_mm"] = float(np.nanmean(err_mm))
        if loc.config.num_landmarks == SPINE_K:
            gt_angles = _angles(sample.landmarks, height)
            pred_angles = _angles(pred.landmarks, height)
            if gt_angles is not None and pred_angles is not None:
                cobb_gt.append(gt_angles)
                cobb_pred.append(pred_angles)
                row.update({f"{a}_gt": float(g) for a, g in zip(ANGLES, gt_angles, strict=True)})
                row.update(
                    {f"{a}_pred": float(p) for a, p in zip(ANGLES, pred_angles, strict=True)}
                )
        rows.append(row)

    all_px, all_pct = np.concatenate(px), np.concatenate(pct)
    summary: dict[str, Any] = {
        "checkpoint": str(checkpoint) if checkpoint else "bundled default",
        "data": str(data),
        "split": split,
        "images": len(rows),
        "landmarks_scored": int(np.isfinite(all_px).sum()),
        "mre_px": float(np.nanmean(all_px)),
        "mre_pct_height": float(np.nanmean(all_pct)),
    }
    with_spacing = len(mm) == len(rows)
    if with_spacing:
        all_mm = np.concatenate(mm)
        summary["mre_mm"] = float(np.nanmean(all_mm))
        summary["sdr_mm"] = sdr(all_mm, radii or (2.0, 2.5, 3.0, 4.0))
    else:
        summary["sdr_pct_height"] = sdr(all_pct, radii or (1.0, 2.0))
    if cobb_gt:
        p, g = np.array(cobb_pred), np.array(cobb_gt)
        summary["cobb_images"] = len(g)
        summary["smape"] = smape(p, g)
        summary["smape_per_angle"] = {a: smape(p[:, [i]], g[:, [i]]) for i, a in enumerate(ANGLES)}
        summary["cobb_mae_deg"] = {
            a: float(np.mean(np.abs(p[:, i] - g[:, i]))) for i, a in enumerate(ANGLES)
        }
    return {"summary": summary, "images": rows}


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of the summary for the terminal."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.2f}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        lines.append(f"{key:<18} {value}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the evaluation report as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
