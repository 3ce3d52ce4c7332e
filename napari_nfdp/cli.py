"""Headless batch detection: ``nfdp detect PATH... --out results.csv [--overlays DIR]``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_nfdp.cli_help import HelpFormatter, add_version_option

if TYPE_CHECKING:
    from napari_nfdp.core.detection import Detection
    from napari_nfdp.core.localizer import Prediction


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


def _row(
    path: Path,
    detection: Detection,
    spacing: Sequence[float] | None,
    spacing_source: str | None = None,
) -> list[object]:
    """The CSV row of one film: the report cells, its size, then every landmark."""
    from napari_nfdp.io.report import report_row

    row = report_row(
        str(path),
        _status(detection),
        detection.cobb,
        spacing=spacing,
        model=detection.model_id,
        spacing_source=spacing_source,
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


def model_to_use(model: str | None, checkpoint: str | Path | None) -> tuple[Path, str]:
    """(checkpoint file, model id) of ``checkpoint``, else of registry version ``model``, else
    of the version selected in the GUI's model list (the bundled model until one is chosen)."""
    from napari_nfdp.core.registry import ModelRegistry

    if checkpoint is not None:
        return Path(checkpoint), Path(checkpoint).name
    registry = ModelRegistry.default()
    try:
        version = registry.get(model) if model else registry.selected()
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return version.path, version.id


def _write_markups(
    folder: Path, path: Path, detection: Detection, pred: Prediction, info: dict
) -> Path:
    """``<folder>/<film stem>.mrk.json`` (3D Slicer): the predicted points (those off the film
    undefined) and the detection's Cobb lines and angles."""
    from napari_nfdp.io.markups import FilmFrame, MarkupsLandmarks, markups_path, write_markups

    points = pred.landmarks.copy()
    points[~pred.visible] = np.nan
    landmarks = MarkupsLandmarks(
        tuple(pred.landmark_names),
        points,
        ["model"] * len(points),
        FilmFrame.from_info(info),
        path.name,
        detection.image_shape,
        detection.model_id or None,
    )
    return write_markups(folder / markups_path(path).name, landmarks, cobb=detection.cobb)


def detect(
    paths: Sequence[str | Path],
    out_csv: str | Path,
    *,
    overlays: str | Path | None = None,
    markups: str | Path | None = None,
    checkpoint: str | Path | None = None,
    model: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> int:
    """Detect landmarks (and Cobb angles for spine models) on every image; return the failures.

    Each image becomes one CSV row through the same detect path as the GUI (blank check,
    prediction, plausibility, Cobb); an image that cannot be read or analysed gets its error
    in the ``status`` column instead of stopping the batch, an implausible one
    ``implausible: <why>`` and no angles. The model is ``checkpoint``, else registry version
    ``model``, else the one selected in the GUI (see :func:`model_to_use`). ``markups``: a
    folder for one 3D Slicer ``<film stem>.mrk.json`` per film with a prediction.
    """
    from tqdm import tqdm

    from napari_nfdp.core.atomic import atomic_write
    from napari_nfdp.core.detection import detect as detect_film
    from napari_nfdp.core.localizer import Localizer
    from napari_nfdp.io.images import read_image, write_image
    from napari_nfdp.io.overlay import render_overlay

    files = list(iter_image_paths(paths))
    model_path, model_id = model_to_use(model, checkpoint)
    loc = Localizer.load(model_path, device=device)
    for folder in (overlays, markups):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
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
        table.append(_row(path, detection, spacing, info.get("spacing_source")))
        pred = detection.prediction
        if overlays is not None and pred is not None:
            why = detection.doubt or detection.cobb_note or ""
            picture = render_overlay(
                image, pred.landmarks, detection.cobb, pred.review, notes=[why]
            )
            write_image(Path(overlays) / f"{path.stem}_nfdp.png", picture)
        if markups is not None and pred is not None:
            _write_markups(Path(markups), path, detection, pred, info)
    atomic_write(out_csv, lambda handle: csv.writer(handle).writerows(table), text=True)
    return failures


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``nfdp``."""
    parser = argparse.ArgumentParser(
        prog="nfdp", description="NFDP landmark detection", formatter_class=HelpFormatter
    )
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    det = sub.add_parser(
        "detect",
        help="detect landmarks and Cobb angles on images and folders",
        description="Detect the landmarks (and the Cobb angles of spine models) on every image "
        "with the model selected in the napari dock's model list, or the one named.",
        formatter_class=HelpFormatter,
    )
    det.add_argument("paths", nargs="+", help="image files (DICOM, PNG, JPEG, TIFF) or folders")
    det.add_argument("--out", required=True, help="CSV of landmarks and Cobb angles")
    det.add_argument(
        "--overlays",
        default=None,
        help="folder for overlay PNGs (landmarks, Cobb lines and angle text) (default: none "
        "written)",
    )
    det.add_argument(
        "--markups",
        default=None,
        metavar="DIR",
        help="folder for 3D Slicer markups, DIR/<film stem>.mrk.json per film with a "
        "prediction: landmarks, Cobb lines and angles in LPS mm (default: none written)",
    )
    which = det.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default=None,
        metavar="ID",
        help="model registry version (v3, bundled) from $NAPARI_NFDP_HOME/models (default: the "
        "version selected in the napari dock, the bundled model until one is chosen)",
    )
    which.add_argument(
        "--checkpoint",
        default=None,
        help="model checkpoint file instead of a registry version (default: see --model)",
    )
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
            markups=args.markups,
            checkpoint=args.checkpoint,
            model=args.model,
            device=args.device,
            progress=sys.stderr.isatty(),
        )
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" and overlays in {args.overlays}" if args.overlays else ""))
    if args.markups:
        print(f"wrote 3D Slicer markups in {args.markups}")
    if failures:
        print(f"{failures} image(s) could not be analysed; see the status column", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
