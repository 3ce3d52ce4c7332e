"""How landmark error turns into Cobb angle error: the truth landmarks of a test split with
independent Gaussian noise added, at several mean radial errors, scored like a prediction.

Each level is a target MRE in percent of the image height; every coordinate of every landmark
gets noise with sigma = level * height / 100 / sqrt(pi / 2) (so the mean radial error of the
noise is the level), repeated ``--repeats`` times with seeded draws. The bundled (or given)
model's own predictions are scored in the same table for comparison: a model whose errors are
smoother along the spine than independent noise gets better angles at the same MRE.

Example::

    python benchmarks/cobb_sensitivity.py --data data/synth --split test
"""

from __future__ import annotations

import argparse
import math

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

from napari_nfdp.core.localizer import Localizer, resolve_device
from training.evaluate import ANGLES, Scoreboard, split_sources


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder with a test split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument(
        "--levels",
        type=float,
        nargs="+",
        default=[0.5, 0.35, 0.25, 0.15, 0.1, 0.05],
        help="noise MRE levels, %% of image height",
    )
    parser.add_argument("--repeats", type=int, default=5, help="noise draws per image and level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="checkpoint (default: bundled model)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best)")
    add_output_option(parser, "cobb_sensitivity")
    return parser


def _row(label: str, summary: dict) -> list:
    return [
        label,
        fmt(summary["mre_pct_height"], 3),
        summary["mre_px"],
        summary["smape"],
        *(summary["cobb_mae_deg"][a] for a in ANGLES),
    ]


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    if args.repeats < 1 or any(level <= 0 for level in args.levels):
        raise ValueError("--repeats must be >= 1 and every level > 0")
    sources = split_sources(args.data, args.split, args.limit)
    samples = [source.load(max_side=None) for source in sources]
    device = resolve_device(args.device)
    localizer = Localizer.load(args.checkpoint, device=str(device))

    model = Scoreboard()
    for sample in samples:
        pred = localizer.predict(sample.image).landmarks
        model.add(sample.name, pred, sample.landmarks, sample.image.shape[0])
    results = [{"source": "model", **model.summary()}]
    rows = [_row("model prediction", results[0])]

    rng = np.random.default_rng(args.seed)
    for level in args.levels:
        board = Scoreboard()
        for sample in samples:
            height = sample.image.shape[0]
            sigma = level / 100.0 * height / math.sqrt(math.pi / 2.0)
            for _ in range(args.repeats):
                noisy = sample.landmarks + rng.normal(0.0, sigma, sample.landmarks.shape)
                board.add(sample.name, noisy, sample.landmarks, height)
        summary = board.summary()
        results.append({"source": "noise", "level_pct_height": level, **summary})
        rows.append(_row(f"truth + noise, {level:g} % of height", summary))

    headers = ["landmarks", "MRE % height", "MRE px", "SMAPE %"]
    headers += [f"MAE {a.upper()}, deg" for a in ANGLES]
    checkpoint = describe_checkpoint(args.checkpoint)
    notes = (
        f"{len(samples)} images of split `{args.split}` of `{args.data}`; noise rows: "
        f"{args.repeats} draws per image (seed {args.seed}), independent for every coordinate. "
        f"Model row: checkpoint `{checkpoint['path']}` (sha256 {checkpoint['sha256']}). "
        "Angles by `napari_nfdp.core.cobb` from the noisy (or predicted) and the true landmarks."
    )
    publish(
        args.json,
        "Cobb angle sensitivity to landmark error",
        provenance([device]),
        {**vars(args), "checkpoint": checkpoint},
        markdown_table(headers, rows) + "\n\n" + notes,
        results,
    )


if __name__ == "__main__":
    run_script(main)
