"""Evaluation of a checkpoint on a dataset split: MRE, SDR, Cobb angles and SMAPE."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_nfdp.core.cobb import CobbError, cobb_angles
from napari_nfdp.core.localizer import Localizer
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from training.datasets import SampleSource, open_dataset
from training.metrics import radial_errors, sdr, smape

ANGLES = ("pt", "mt", "tl")
SDR_RADII_MM = (2.0, 2.5, 3.0, 4.0)
SDR_RADII_PCT = (1.0, 2.0)


def cobb_triplet(landmarks: np.ndarray, image_height: float) -> np.ndarray | None:
    """(PT, MT, TL) in degrees, or None when the landmarks give no Cobb angles."""
    try:
        result = cobb_angles(landmarks, image_height)
    except CobbError:
        return None
    return np.array([result.pt, result.mt, result.tl])


@dataclass
class Scoreboard:
    """Errors accumulated image by image; :meth:`summary` turns them into the metrics."""

    radii_mm: Sequence[float] = SDR_RADII_MM
    radii_pct: Sequence[float] = SDR_RADII_PCT
    px: list[np.ndarray] = field(default_factory=list)
    pct: list[np.ndarray] = field(default_factory=list)
    mm: list[np.ndarray] = field(default_factory=list)
    cobb_pred: list[np.ndarray] = field(default_factory=list)
    cobb_truth: list[np.ndarray] = field(default_factory=list)
    cobb_failures: int = 0

    def add(
        self,
        name: str,
        pred: np.ndarray,
        truth: np.ndarray,
        height: float,
        spacing: tuple[float, float] | None = None,
        cobb_height: float | None = None,
    ) -> dict[str, Any]:
        """Score one image; returns its row. ``cobb_height`` is the height the Cobb S-test uses
        (defaults to ``height``: it differs only for a film placed on a larger canvas)."""
        if pred.shape != truth.shape:
            raise ValueError(
                f"model predicts {pred.shape[0]} landmarks, {name} has {truth.shape[0]}"
            )
        err = radial_errors(pred, truth)
        self.px.append(err)
        self.pct.append(err / height * 100.0)
        row: dict[str, Any] = {
            "image": name,
            "height": height,
            "mre_px": float(np.nanmean(err)),
            "mre_pct_height": float(np.nanmean(err)) / height * 100.0,
        }
        if spacing is not None:
            err_mm = radial_errors(pred, truth, spacing=spacing)
            self.mm.append(err_mm)
            row["mre_mm"] = float(np.nanmean(err_mm))
        if truth.shape[0] == len(SPINE_LANDMARK_NAMES):
            gt = cobb_triplet(truth, cobb_height or height)
            pr = cobb_triplet(pred, cobb_height or height)
            if gt is None or pr is None:
                self.cobb_failures += 1
            else:
                self.cobb_truth.append(gt)
                self.cobb_pred.append(pr)
                row.update({f"{a}_gt": float(g) for a, g in zip(ANGLES, gt, strict=True)})
                row.update({f"{a}_pred": float(p) for a, p in zip(ANGLES, pr, strict=True)})
        return row

    def summary(self) -> dict[str, Any]:
        """MRE (px, % of height, mm when every image has a spacing), SDR, Cobb SMAPE and MAE."""
        all_px, all_pct = np.concatenate(self.px), np.concatenate(self.pct)
        out: dict[str, Any] = {
            "images": len(self.px),
            "landmarks_scored": int(np.isfinite(all_px).sum()),
            "mre_px": float(np.nanmean(all_px)),
            "mre_pct_height": float(np.nanmean(all_pct)),
            "sdr_pct_height": sdr(all_pct, self.radii_pct),
        }
        if self.mm and len(self.mm) == len(self.px):
            all_mm = np.concatenate(self.mm)
            out["mre_mm"] = float(np.nanmean(all_mm))
            out["sdr_mm"] = sdr(all_mm, self.radii_mm)
        if self.cobb_truth or self.cobb_failures:
            out["cobb_images"] = len(self.cobb_truth)
            out["cobb_failures"] = self.cobb_failures
        if self.cobb_truth:
            p, g = np.array(self.cobb_pred), np.array(self.cobb_truth)
            out["smape"] = smape(p, g)
            out["smape_per_angle"] = {a: smape(p[:, [i]], g[:, [i]]) for i, a in enumerate(ANGLES)}
            out["cobb_mae_deg"] = {
                a: float(np.mean(np.abs(p[:, i] - g[:, i]))) for i, a in enumerate(ANGLES)
            }
        return out


def split_sources(
    data: str | Path, split: str = "test", limit: int | None = None
) -> list[SampleSource]:
    """The first ``limit`` images (all when None) of ``split`` of ``data``; ValueError if none."""
    sources = list(open_dataset(data, split=split))[:limit]
    if not sources:
        raise ValueError(f"no images in split {split!r} of {data}")
    return sources


def evaluate(
    checkpoint: str | Path | None,
    data: str | Path,
    *,
    split: str = "test",
    radii: Sequence[float] | None = None,
    device: str | None = None,
    limit: int | None = None,
    stage1_only: bool = False,
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``split`` of ``data``; returns a summary and per-image rows.
    ``stage1_only`` leaves out a two-stage model's refinement (for ablations).

    Errors are in pixels of the original images, in percent of the image height, and in mm
    where every image has a spacing. ``radii`` are the SDR radii in mm (default 2, 2.5, 3,
    4 mm); SDR in percent of image height (1 and 2 %) is always reported.
    """
    loc = Localizer.load(checkpoint, device=device)
    if stage1_only:
        loc.refiner = None
    sources = split_sources(data, split, limit)
    board = Scoreboard(radii_mm=tuple(radii) if radii else SDR_RADII_MM)
    rows = []
    for source in sources:
        sample = source.load(max_side=None)
        pred = loc.predict(sample.image)
        rows.append(
            board.add(
                sample.name, pred.landmarks, sample.landmarks, sample.image.shape[0], sample.spacing
            )
        )
    summary = {
        "checkpoint": str(checkpoint) if checkpoint else "bundled default",
        "data": str(data),
        "split": split,
        **board.summary(),
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
