"""Headless batch detection: ``nfdp detect PATH... --out results.csv [--overlays DIR]``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_nfdp.core.detection import Detection


def iter_image_paths(paths: Sequence[str | Path]) -> Iterator[Path]:
    """The image files named by ``paths``; folders contribute their images in name order."""
    from napari_nfdp.io.images import list_images

    for path in map(Path, paths):
        if path.is_dir():
            yield from list_images(path)
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def _header(names: Sequence[str]) -> list[str]:
    from napari_nfdp.io.report import REPORT_COLUMNS

    cols = [*REPORT_COLUMNS, "height", "width"]
    for name in names:
        cols += [
            f"{name}_{what}" for what in ("row", "col", "row_mm", "col_mm", "sigma", "visible")
        ]
    return cols


def _status(detection: Detection) -> str:
    if detection.error:
        return f"error: {detection.error}"
    if detection.doubt:
        return f"implausible: {detection.doubt}"
    if detection.cobb is None and detection.cobb_note:
        from napari_nfdp.io.report import status_cell

        return status_cell(detection.cobb_note)
    return "ok"


def _row(path: Path, detection: Detection, spacing: Sequence[float] | None) -> list[object]:
    """The CSV row of one film: the report cells, its size, then every landmark."""
    from napari_nfdp.io.report import report_row

    row = report_row(
        str(path), _status(detection), detection.cobb, spacing=spacing, model=detection.model_id
    )
    pred = detection.prediction
    if pred is None:
        return row
    row += [*detection.image_shape]
    scale = np.asarray(spacing, dtype=float) if spacing else None
    sigmas = pred.sigma.mean(axis=1)
    for point, sigma, shown in zip(pred.landmarks, sigmas, pred.visible, strict=True):
        mm = [f"{v:.4f}" for v in point * scale] if scale is not None else ["", ""]
        row += [f"{point[0]:.2f}", f"{point[1]:.2f}", *mm, f"{sigma:.2f}", int(shown)]
    return row


def detect(
    paths: Sequence[str | Path],
    out_csv: str | Path,
    *,
    overlays: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
) -> int:
    """Detect landmarks (and Cobb angles for spine models) on every image; return the failures.

    Each image becomes one CSV row through the same detect path as the GUI (blank check,
    prediction, plausibility, Cobb); an image that cannot be read or analysed gets its error
    in the ``status`` column instead of stopping the batch, an implausible one
    ``implausible: <why>`` and no angles.
    """
    from tqdm import tqdm

    from napari_nfdp.core.atomic import atomic_write
    from napari_nfdp.core.detection import detect as detect_film
    from napari_nfdp.core.localizer import Localizer
    from napari_nfdp.io.images import read_image, write_image
    from napari_nfdp.io.overlay import render_overlay

    files = list(iter_image_paths(paths))
    loc = Localizer.load(checkpoint, device=device)
    model_id = Path(checkpoint).name if checkpoint else "bundled"
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    failures = 0
    table: list[list[object]] = [_header(loc.landmark_names)]
    for path in tqdm(files, desc="detect", unit="image", disable=not progress):
        try:
            image, info = read_image(path)
        except (ValueError, OSError) as exc:
            failures += 1
            table.append([str(path), f"error: {exc}"])
            continue
        spacing = info.get("spacing")
        detection = detect_film(loc, image, spacing=spacing, model_id=model_id)
        failures += detection.status == "error"
        table.append(_row(path, detection, spacing))
        pred = detection.prediction
        if overlays is not None and pred is not None:
            picture = render_overlay(image, pred.landmarks, detection.cobb, pred.review)
            write_image(Path(overlays) / f"{path.stem}_nfdp.png", picture)
    atomic_write(out_csv, lambda handle: csv.writer(handle).writerows(table), text=True)
    return failures


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nfdp``."""
    parser = argparse.ArgumentParser(prog="nfdp", description="NFDP landmark detection")
    sub = parser.add_subparsers(dest="command", required=True)
    det = sub.add_parser("detect", help="detect landmarks and Cobb angles on images and folders")
    det.add_argument("paths", nargs="+", help="image files (DICOM, PNG, JPEG, TIFF) or folders")
    det.add_argument("--out", required=True, help="CSV of landmarks and Cobb angles")
    det.add_argument("--overlays", default=None, help="folder for overlay PNGs")
    det.add_argument("--checkpoint", default=None, help="model checkpoint (default: bundled)")
    det.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nfdp``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        failures = detect(
            args.paths,
            args.out,
            overlays=args.overlays,
            checkpoint=args.checkpoint,
            device=args.device,
            progress=sys.stderr.isatty(),
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" and overlays in {args.overlays}" if args.overlays else ""))
    if failures:
        print(f"{failures} image(s) could not be analysed; see the status column", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
