"""Headless batch detection: ``nfdp detect PATH... --out results.csv [--overlays DIR]``."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path


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
    cols = ["image", "status", "height", "width", "curve_type"]
    for angle in ("PT", "MT", "TL"):
        cols += [angle, f"{angle}_ends"]
    for name in names:
        cols += [f"{name}_row", f"{name}_col", f"{name}_sigma"]
    return cols


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

    Each image becomes one CSV row; an image that cannot be read or analysed gets its
    error in the ``status`` column instead of stopping the batch.
    """
    from tqdm import tqdm

    from napari_nfdp.core.atomic import atomic_write
    from napari_nfdp.core.cobb import CobbError, cobb_angles
    from napari_nfdp.core.localizer import Localizer, needs_review
    from napari_nfdp.core.schema import vertebra_range
    from napari_nfdp.io.images import read_image, write_image
    from napari_nfdp.io.overlay import render_overlay

    files = list(iter_image_paths(paths))
    loc = Localizer.load(checkpoint, device=device)
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    failures = 0
    table: list[list[object]] = [_header(loc.landmark_names)]
    for path in tqdm(files, desc="detect", unit="image", disable=not progress):
        row: list[object] = [str(path)]
        try:
            image, _ = read_image(path)
            pred = loc.predict(image)
        except (ValueError, OSError) as exc:
            failures += 1
            table.append([*row, f"error: {exc}"])
            continue
        cobb, status = None, "ok"
        if len(loc.landmark_names) == 68:
            try:
                cobb = cobb_angles(pred.landmarks, image.shape[0])
            except CobbError as exc:
                status = f"no Cobb angles: {exc}"
        row += [status, image.shape[0], image.shape[1], cobb.curve_type if cobb else ""]
        for name in ("PT", "MT", "TL"):
            if cobb is None:
                row += ["", ""]
            else:
                curve = cobb.curve(name)
                row += [f"{curve.angle:.2f}", vertebra_range(curve.upper, curve.lower)]
        sigma = pred.sigma.mean(axis=1)
        for (r, c), s in zip(pred.landmarks, sigma, strict=True):
            row += [f"{r:.2f}", f"{c:.2f}", f"{s:.2f}"]
        table.append(row)
        if overlays is not None:
            picture = render_overlay(image, pred.landmarks, cobb, needs_review(pred.sigma))
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
