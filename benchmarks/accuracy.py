"""Accuracy of a checkpoint on a held-out test split: MRE, SDR, Cobb SMAPE and angle errors.

Example::

    python benchmarks/accuracy.py --checkpoint napari_nfdp/models/spine_default.pt \\
        --data data/synth --split test
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from common import (
    add_output_option,
    describe_checkpoint,
    fmt,
    markdown_table,
    provenance,
    publish,
    run_script,
)

from napari_nfdp.core.localizer import resolve_device
from training.evaluate import ANGLES, evaluate

# The upper limits on held-out synthetic data, by summary key (MAE: each angle).
TARGETS = {"mre_pct_height": 0.5, "smape": 5.0, "cobb_mae_deg": 2.0}


def _image_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spread of the per-image MRE and the largest Cobb angle error per angle."""
    mre = np.array([row["mre_px"] for row in rows])
    stats: dict[str, Any] = {
        "image_mre_px_median": float(np.nanmedian(mre)),
        "image_mre_px_p95": float(np.nanpercentile(mre, 95)),
        "image_mre_px_max": float(np.nanmax(mre)),
        "worst_image": rows[int(np.nanargmax(mre))]["image"],
    }
    scored = [row for row in rows if f"{ANGLES[0]}_gt" in row]
    if scored:
        stats["cobb_max_abs_error_deg"] = {
            a: max(abs(row[f"{a}_pred"] - row[f"{a}_gt"]) for row in scored) for a in ANGLES
        }
    return stats


def _verdict(value: float | None, limit: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return "met" if value <= limit else "missed"


def _table(summary: dict[str, Any], stats: dict[str, Any]) -> str:
    sdr = summary.get("sdr_pct_height", {})
    rows: list[list[Any]] = [
        ["images (Cobb-scored)", f"{summary['images']} ({summary.get('cobb_images', 0)})", ""],
        ["landmarks scored", summary["landmarks_scored"], ""],
        ["MRE, px", summary["mre_px"], ""],
        [
            "MRE, % of image height",
            fmt(summary["mre_pct_height"], 3),
            f"<= {TARGETS['mre_pct_height']}: "
            f"{_verdict(summary['mre_pct_height'], TARGETS['mre_pct_height'])}",
        ],
    ]
    if "mre_mm" in summary:
        rows.append(["MRE, mm", summary["mre_mm"], ""])
    for radius in (1.0, 2.0):
        rows.append([f"SDR at {radius:g} % of height, %", sdr.get(radius), ""])
    for radius, rate in summary.get("sdr_mm", {}).items():
        rows.append([f"SDR at {radius:g} mm, %", rate, ""])
    rows.append(
        [
            "Cobb SMAPE (total), %",
            summary.get("smape"),
            f"<= {TARGETS['smape']}: {_verdict(summary.get('smape'), TARGETS['smape'])}",
        ]
    )
    for angle in ANGLES:
        rows.append(
            [f"SMAPE {angle.upper()}, %", summary.get("smape_per_angle", {}).get(angle), ""]
        )
    for angle in ANGLES:
        mae = summary.get("cobb_mae_deg", {}).get(angle)
        limit = TARGETS["cobb_mae_deg"]
        rows.append([f"MAE {angle.upper()}, degrees", mae, f"<= {limit}: {_verdict(mae, limit)}"])
    for angle, worst in stats.get("cobb_max_abs_error_deg", {}).items():
        rows.append([f"largest {angle.upper()} error, degrees", worst, ""])
    rows += [
        ["per-image MRE median / p95 / max, px", _spread(stats), ""],
        ["worst image", stats["worst_image"], ""],
    ]
    return markdown_table(["metric", "value", "target"], rows)


def _spread(stats: dict[str, Any]) -> str:
    keys = ("image_mre_px_median", "image_mre_px_p95", "image_mre_px_max")
    return " / ".join(fmt(stats[k]) for k in keys)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--data", required=True, help="dataset folder (AASCE layout)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best)")
    parser.add_argument(
        "--stage1-only", action="store_true", help="leave out a two-stage model's refinement"
    )
    add_output_option(parser, "accuracy")
    return parser


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    device = resolve_device(args.device)
    report = evaluate(
        args.checkpoint,
        args.data,
        split=args.split,
        device=str(device),
        limit=args.limit,
        stage1_only=args.stage1_only,
    )
    summary = report["summary"]
    stats = _image_statistics(report["images"])
    checkpoint = describe_checkpoint(args.checkpoint)
    notes = (
        f"Checkpoint `{checkpoint['path']}` (sha256 {checkpoint['sha256']}, "
        f"{checkpoint['config']['variant']}, input {checkpoint['config']['input_size']}), "
        f"split `{args.split}` of `{args.data}`. SDR radii are percent of each image's height; "
        "MRE % is each landmark's error over its image's height, averaged. Angles are labelled "
        "PT / MT / TL as `napari_nfdp.core.cobb` assigns them."
    )
    publish(
        args.json,
        "Accuracy on the held-out test split",
        provenance([device]),
        {**vars(args), "checkpoint": checkpoint},
        f"{_table(summary, stats)}\n\n{notes}",
        {"summary": summary, "image_statistics": stats, "images": report["images"]},
    )


if __name__ == "__main__":
    run_script(main)
