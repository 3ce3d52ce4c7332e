"""Ablation of the two-stage model (issue 13): stage 1 alone, + stage 2, + the structure step.

On a held-out split, per film: stage 1's landmarks; stage 2's refinement of them; stage 2 run
again on its own output (a cascade); then the structure step, a whole-spine shape prior
(``shape_prior.py``) fitted on the true landmarks of --prior-data's training films,
reconciling the refined landmarks by their sigma at each --strength. Reports MRE (% of
height), Cobb SMAPE, the main curve's MAE (the angle that is largest in the truth), each
angle's MAE and the share of films whose main curve is off by more than 8 degrees.

Example::

    python benchmarks/stages_ablation.py --checkpoint runs/refine1/best.pt --data data/synth \\
        --split test --prior-data data/mixed --json benchmarks/results/stages_ablation.json
"""

from __future__ import annotations

import argparse

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
from shape_prior import ShapePrior

from napari_nfdp.core.localizer import Localizer
from training.datasets import open_dataset
from training.evaluate import Scoreboard, split_sources


def _main_curve(board: Scoreboard) -> tuple[float, float]:
    """(MAE of the main curve in degrees, share of films with it off by more than 8 deg, %)."""
    pred, truth = np.array(board.cobb_pred), np.array(board.cobb_truth)
    main = truth.argmax(axis=1)
    error = np.abs(pred[np.arange(len(main)), main] - truth[np.arange(len(main)), main])
    return float(error.mean()), float(100 * (error > 8).mean())


def _sigma_to_sd(localizer: Localizer, refiner, data: str, split: str, n: int = 30) -> float:
    """Robust spread of the stage-2 residuals over their sigma (1.4826 x median |r| / sigma)."""
    ratios = []
    for source in open_dataset(data, split)[:n]:
        sample = source.load(max_side=None)
        first = localizer.predict(sample.image)
        points, sigma = refiner(sample.image, first.landmarks, first.sigma, first.visible)
        seen = first.visible & np.isfinite(sample.landmarks).all(axis=1)
        ratios.append((np.abs(points - sample.landmarks) / sigma)[seen].ravel())
    return float(1.4826 * np.median(np.concatenate(ratios)))


def _row(name: str, board: Scoreboard) -> list[str]:
    summary = board.summary()
    mae, off = _main_curve(board)
    per_angle = " / ".join(fmt(v) for v in summary["cobb_mae_deg"].values())
    return [
        name,
        fmt(summary["mre_pct_height"], 3),
        fmt(summary["smape"]),
        fmt(mae),
        per_angle,
        fmt(off, 1),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a two-stage checkpoint")
    parser.add_argument("--data", required=True, help="dataset with the held-out split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N films")
    parser.add_argument("--prior-data", required=True, help="dataset whose truths fit the prior")
    parser.add_argument("--prior-limit", type=int, default=600, help="films fitting the prior")
    parser.add_argument("--components", type=int, default=12, help="shape components kept")
    parser.add_argument("--strength", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument(
        "--calibration-data",
        required=True,
        help="held-out films (validation split) on which stage 2's sigma is turned into a "
        "standard deviation for the prior: NFDP's sigma is a scale of the learned residual "
        "density, not the error's spread",
    )
    parser.add_argument("--calibration-split", default="validation")
    add_output_option(parser, "stages_ablation")
    args = parser.parse_args()

    shapes = [s.landmarks for s in open_dataset(args.prior_data, "training")[: args.prior_limit]]
    prior = ShapePrior.fit(np.stack(shapes), args.components)
    localizer = Localizer.load(args.checkpoint, device="cpu")
    refiner, localizer.refiner = localizer.refiner, None
    if refiner is None:
        raise SystemExit(f"{args.checkpoint} has no stage 2")
    factor = _sigma_to_sd(localizer, refiner, args.calibration_data, args.calibration_split)
    log(f"stage 2: error spread = {factor:.4f} x sigma on {args.calibration_data}")
    names = ["stage 1", "+ stage 2", "+ stage 2 again (cascade)"]
    names += [f"+ structure (strength {s:g})" for s in args.strength]
    boards = {name: Scoreboard() for name in names}
    for source in split_sources(args.data, args.split, args.limit):
        sample = source.load(max_side=None)
        first = localizer.predict(sample.image)
        points, sigma = refiner(sample.image, first.landmarks, first.sigma, first.visible)
        again, _ = refiner(sample.image, points, sigma, first.visible)
        found = [first.landmarks, points, again] + [
            prior.reconcile(points, sigma * factor, first.visible, s) for s in args.strength
        ]
        height = sample.image.shape[0]
        for name, guess in zip(names, found, strict=True):
            boards[name].add(sample.name, guess, sample.landmarks, height, sample.spacing)
    log(f"{len(boards[names[0]].px)} films of {args.data} ({args.split})")
    headers = [
        "variant",
        "MRE % height",
        "Cobb SMAPE %",
        "main-curve MAE deg",
        "MAE PT / MT / TL deg",
        "films main curve > 8 deg, %",
    ]
    table = markdown_table(headers, [_row(name, board) for name, board in boards.items()])
    checkpoint = describe_checkpoint(args.checkpoint)
    notes = (
        f"Checkpoint `{checkpoint['path']}` (sha256 {checkpoint['sha256']}); shape prior: "
        f"{len(shapes)} training films of `{args.prior_data}`, {args.components} components."
    )
    publish(
        args.json,
        "Two-stage ablation",
        provenance(["cpu"]),
        {**vars(args), "checkpoint": checkpoint},
        f"{table}\n\n{notes}",
        {name: board.summary() for name, board in boards.items()},
    )


if __name__ == "__main__":
    run_script(main)
