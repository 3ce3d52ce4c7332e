"""A model on projected simulator films (fields of view it may never have seen), and the
simulator's own speed.

Per field of view (full spine, chest, thoracolumbar, lumbar): mean radial error of the points
on the film (percent of the film height; off-film points are left out, they have no pixel to
click), the error on T1-L2 alone, the share of films the detect path calls implausible ("No
spine found?"), how often ``Prediction.visible`` is right about the points off and on the
film, and honest doubt: how well sigma ranks the points more than 1 % of the height off
(AUROC), and the share of them ``Prediction.review`` catches against the share of all points
it marks. Then films per second of ``simulate_projected`` at 2500 x 1000.
Films use seeds from --seed on (held out from any training seed range you keep below it).

Example::

    python benchmarks/projected_films.py --checkpoint napari_nfdp/models/spine_default.pt --n 12
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import fmt, log, markdown_table, provenance, provenance_markdown

T1_TO_L2 = slice(0, 4 * 14)  # T1..L2: the vertebrae a chest film still shows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled one)")
    parser.add_argument("--n", type=int, default=12, help="films per field of view")
    parser.add_argument("--seed", type=int, default=3_100_000, help="first film seed")
    parser.add_argument("--speed-films", type=int, default=6, help="films timed for speed")
    parser.add_argument(
        "--stage1-only", action="store_true", help="leave out a two-stage model's refinement"
    )
    args = parser.parse_args()

    from napari_nfdp.core.detection import detect
    from napari_nfdp.core.localizer import Localizer
    from napari_nfdp.simulator import FIELDS, simulate_projected

    localizer = Localizer.load(args.checkpoint, device="cpu")
    if args.stage1_only:
        localizer.refiner = None
    rows = []
    for field in FIELDS:
        mre, upper, doubtful = [], [], 0
        truth_on, said_on, scores, wrong, review = [], [], [], [], []
        for seed in range(args.seed, args.seed + args.n):
            film = simulate_projected(seed, field=field, photometric="MONOCHROME2")
            result = detect(localizer, film.image)
            pred, height = result.prediction, film.image.shape[0]
            error = np.linalg.norm(pred.landmarks - film.landmarks, axis=1)
            mre.append(100 * error[film.visible].mean() / height)
            upper.append(100 * error[T1_TO_L2].mean() / height)
            doubtful += result.status == "implausible"
            truth_on.append(film.visible)
            said_on.append(pred.visible)
            on = film.visible
            scores.append(pred.sigma.mean(axis=1)[on] / height)
            wrong.append(100 * error[on] / height > 1.0)
            review.append(pred.review[on])
        truth_on, said_on = np.concatenate(truth_on), np.concatenate(said_on)
        scores, wrong, review = map(np.concatenate, (scores, wrong, review))
        off = ~truth_on
        rows.append(
            [field, fmt(statistics.median(mre)), fmt(np.mean(mre)), fmt(np.mean(upper)),
             f"{doubtful}/{args.n}",
             _share(~said_on[off]), _share(said_on[truth_on]),
             fmt(_auroc(scores, wrong)), _share(review[wrong]), _share(review)]
        )  # fmt: skip
    start = time.perf_counter()
    for seed in range(args.speed_films):
        simulate_projected(seed, shape=(2500, 1000))
    speed = args.speed_films / (time.perf_counter() - start)

    log(provenance_markdown(provenance()))
    stages = "two stages" if localizer.refiner is not None else "stage 1"
    log(
        f"model: {args.checkpoint or 'bundled'} ({stages}); {args.n} films per field from seed "
        f"{args.seed}"
    )
    headers = [
        "field", "MRE % median", "MRE % mean", "T1-L2 MRE % mean", "implausible",
        "off-film said off", "on-film said on", "sigma AUROC (>1 % off)",
        "review catches", "review marks",
    ]  # fmt: skip
    log(markdown_table(headers, rows))
    log(f"simulator: {speed:.2f} films/s at 2500 x 1000, one process")


def _share(mask: np.ndarray) -> str:
    return f"{100 * mask.mean():.0f} %" if mask.size else "n/a"


def _auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann-Whitney U, ties halved)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


if __name__ == "__main__":
    main()
