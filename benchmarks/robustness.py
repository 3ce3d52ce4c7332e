"""Robustness as in the paper's Table III: test error under noise, blur, rotation and shift.

Each test image is perturbed at full resolution and its landmarks are moved with it:

- Gaussian noise with a standard deviation given as a fraction of the image's intensity range;
- Gaussian blur with a sigma given in percent of the image height;
- rotation by +-angle about the image centre, on a canvas grown to keep the whole film;
- shift by +-fraction of the height and of the width, the canvas grown by twice the shift so
  the film stays whole and its centre moves by the shift;
- low contrast: the intensity range squeezed to a fraction of itself about its middle and
  re-quantised to 8 bits (so fewer grey levels are left);
- inverted polarity (bone dark, as MONOCHROME1 films shown without their inversion).

The sign of each rotation and shift is drawn once per image (seeded), so every level of a
perturbation moves an image the same way. Errors are in percent of the original film height
(rotation and shift do not change pixel distances).

Example::

    python benchmarks/robustness.py --checkpoint napari_nfdp/models/spine_default.pt \\
        --data data/synth
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from common import (
    add_output_option,
    describe_checkpoint,
    fmt,
    log,
    markdown_table,
    provenance,
    publish,
    run_script,
)
from scipy import ndimage

from napari_nfdp.core.localizer import Localizer, resolve_device
from napari_nfdp.core.preprocess import apply_affine
from training.evaluate import Scoreboard, split_sources

SDR_RADII_PCT = (1.0, 2.0)


@dataclass(frozen=True)
class Perturbation:
    """One perturbation kind ("clean", "noise", "blur", "rotation", "shift", "contrast",
    "invert") at one level."""

    kind: str
    level: float = 0.0

    def label(self) -> str:
        """Human-readable description of the level."""
        return {
            "clean": "none",
            "noise": f"sigma {self.level * 100:g} % of intensity range",
            "blur": f"sigma {self.level:g} % of height",
            "rotation": f"+-{self.level:g} degrees",
            "shift": f"+-{self.level * 100:g} % of height and width",
            "contrast": f"{self.level * 100:g} % of the range, 8 bits",
            "invert": "inverted polarity",
        }[self.kind]


@dataclass(frozen=True)
class Draw:
    """Per-image random choices shared by every level: signs and the noise seed."""

    rotation_sign: float
    shift_signs: tuple[float, float]
    noise_seed: int

    @classmethod
    def for_image(cls, seed: int, index: int) -> Draw:
        rng = np.random.default_rng([seed, index])
        signs = rng.choice([-1.0, 1.0], size=3)
        return cls(signs[0], (signs[1], signs[2]), int(rng.integers(2**31)))


def _centre(shape: Sequence[int]) -> np.ndarray:
    return (np.asarray(shape[:2], dtype=np.float64) - 1.0) / 2.0


def _place(
    image: np.ndarray,
    landmarks: np.ndarray,
    linear: np.ndarray,
    canvas: tuple[int, int],
    offset: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Map the image onto a canvas: its centre goes to the canvas centre + ``offset`` and
    ``linear`` acts about it; bilinear, the outside filled with the image's minimum."""
    forward = np.eye(3)
    forward[:2, :2] = linear
    forward[:2, 2] = _centre(canvas) + offset - linear @ _centre(image.shape)
    inverse = np.linalg.inv(forward)
    out = ndimage.affine_transform(
        image,
        inverse[:2, :2],
        offset=inverse[:2, 2],
        output_shape=canvas,
        output=np.float32,
        order=1,
        mode="constant",
        cval=float(image.min()),
    )
    return out, apply_affine(forward, landmarks)


def perturb(
    image: np.ndarray, landmarks: np.ndarray, p: Perturbation, draw: Draw
) -> tuple[np.ndarray, np.ndarray]:
    """The perturbed float32 image and its landmarks (row, col)."""
    height, width = image.shape
    if p.kind == "clean":
        return image, landmarks
    if p.kind == "noise":
        rng = np.random.default_rng(draw.noise_seed)
        spread = float(np.ptp(image))
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(p.level * spread)
        return image + noise, landmarks
    if p.kind == "blur":
        return ndimage.gaussian_filter(image, sigma=p.level / 100.0 * height), landmarks
    if p.kind == "rotation":
        angle = math.radians(p.level * draw.rotation_sign)
        cos, sin = math.cos(angle), math.sin(angle)
        canvas = (
            math.ceil(abs(cos) * height + abs(sin) * width),
            math.ceil(abs(sin) * height + abs(cos) * width),
        )
        linear = np.array([[cos, -sin], [sin, cos]])
        return _place(image, landmarks, linear, canvas, np.zeros(2))
    if p.kind == "shift":
        offset = np.array(draw.shift_signs) * p.level * np.array([height, width])
        canvas = (math.ceil(height + 2 * abs(offset[0])), math.ceil(width + 2 * abs(offset[1])))
        return _place(image, landmarks, np.eye(2), canvas, offset)
    if p.kind == "contrast":
        low, high = float(image.min()), float(image.max())
        unit = (image - low) / max(high - low, 1e-12)
        squeezed = 0.5 + p.level * (unit - 0.5)
        return np.round(squeezed * 255.0).astype(np.float32), landmarks
    if p.kind == "invert":
        return float(image.max()) + float(image.min()) - image, landmarks
    raise ValueError(f"unknown perturbation {p.kind!r}")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--data", required=True, help="dataset folder with a test split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best)")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise and directions")
    parser.add_argument(
        "--noise",
        type=float,
        nargs="*",
        default=[0.02, 0.05, 0.1],
        help="noise sigmas, fractions of the intensity range",
    )
    parser.add_argument(
        "--blur", type=float, nargs="*", default=[0.2, 0.5, 1.0], help="blur sigmas, %% of height"
    )
    parser.add_argument(
        "--rotation", type=float, nargs="*", default=[5.0, 10.0, 15.0], help="degrees"
    )
    parser.add_argument(
        "--shift",
        type=float,
        nargs="*",
        default=[0.025, 0.05, 0.1],
        help="fractions of the height / width",
    )
    parser.add_argument(
        "--contrast",
        type=float,
        nargs="*",
        default=[0.25, 0.1],
        help="fractions of the intensity range kept (then 8-bit quantised)",
    )
    parser.add_argument("--no-invert", action="store_true", help="skip the inverted film")
    add_output_option(parser, "robustness")
    return parser


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    if args.rotation and max(args.rotation) > 90:
        raise ValueError("rotations must be at most 90 degrees")
    device = resolve_device(args.device)
    perturbations = [Perturbation("clean")]
    for kind in ("noise", "blur", "rotation", "shift", "contrast"):
        perturbations += [Perturbation(kind, level) for level in getattr(args, kind)]
    if not args.no_invert:
        perturbations.append(Perturbation("invert"))
    localizer = Localizer.load(args.checkpoint, device=str(device))
    sources = split_sources(args.data, args.split, args.limit)
    scores = {p: Scoreboard() for p in perturbations}
    for index, source in enumerate(sources):
        sample = source.load(max_side=None)
        draw = Draw.for_image(args.seed, index)
        for p in perturbations:
            image, truth = perturb(sample.image, sample.landmarks, p, draw)
            pred = localizer.predict(image).landmarks
            scores[p].add(
                sample.name, pred, truth, sample.image.shape[0], cobb_height=image.shape[0]
            )
        log(f"{index + 1}/{len(sources)} {sample.name}")

    results = []
    clean = scores[perturbations[0]].summary()
    rows = []
    for p in perturbations:
        s = clean if p.kind == "clean" else scores[p].summary()
        results.append({"kind": p.kind, "level": p.level, "label": p.label(), **s})
        rows.append(
            [
                p.kind,
                p.label(),
                s["mre_px"],
                fmt(s["mre_pct_height"], 3),
                fmt(s["mre_pct_height"] - clean["mre_pct_height"], 3),
                s["sdr_pct_height"][2.0],
                s.get("smape"),
                s.get("smape", math.nan) - clean.get("smape", math.nan),
            ]
        )
    headers = [
        "perturbation",
        "level",
        "MRE px",
        "MRE % height",
        "MRE change",
        "SDR 2 %",
        "SMAPE %",
        "SMAPE change",
    ]
    checkpoint = describe_checkpoint(args.checkpoint)
    notes = (
        f"Checkpoint `{checkpoint['path']}` (sha256 {checkpoint['sha256']}), {len(sources)} "
        f"images of split `{args.split}` of `{args.data}`, seed {args.seed}. Noise is added to "
        "the image as read (float, not clipped); blur sigma and shift scale with each image; "
        "rotation and shift keep the whole film on a larger canvas filled with the image's "
        "minimum. MRE % is of the original film height; changes are against the clean row; "
        "Cobb angles of the perturbed ground truth and prediction are compared."
    )
    publish(
        args.json,
        "Robustness (Table III): perturbed test images",
        provenance([device]),
        {**vars(args), "checkpoint": checkpoint},
        markdown_table(headers, rows) + "\n\n" + notes,
        results,
    )


if __name__ == "__main__":
    run_script(main)
