"""Choose the two factors of ``Prediction.review`` on calibration films, held apart from the
films the other benchmarks score.

``review_mask`` flags a point when its sigma is more than ``REVIEW_SIGMA_FACTOR`` times the
film's median sigma, or more than ``TYPICAL_SIGMA_FACTOR`` times the model's typical sigma on
its validation films (``val_sigma_pct`` in the checkpoint). For every pair of factors on a grid
this script reports, pooled over projected films of every field of view and flat films, the
share of the points more than 1 % of the height off that the flag catches and the share of all
points it marks, and picks the pair that catches most while marking at most --max-marks.
Calibration films use seeds from --seed on (keep them apart from projected_films.py's).

Example::

    python benchmarks/review_calibration.py --checkpoint runs/fov2/best.pt --n 10
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from common import fmt, log, markdown_table, provenance, provenance_markdown

MEDIAN_FACTORS = (1.5, 2.0, 2.5, 3.0, 4.0, float("inf"))
TYPICAL_FACTORS = (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, float("inf"))


def collect(checkpoint: str | None, n: int, seed: int) -> dict[str, np.ndarray]:
    """Per on-film point of every calibration film: sigma over the film median, sigma over
    the typical sigma, and whether it is more than 1 % of the height off."""
    from napari_nfdp.core.localizer import Localizer
    from napari_nfdp.simulator import FIELDS, simulate_projected, synthesize_spine

    localizer = Localizer.load(checkpoint, device="cpu")
    typical = localizer.checkpoint.metrics.get("val_sigma_pct") or float("nan")
    films = [(f, s) for f in FIELDS for s in range(seed, seed + n)]
    films += [("flat", s) for s in range(seed, seed + n)]
    parts: dict[str, list[np.ndarray]] = {"median": [], "typical": [], "wrong": []}
    for field, film_seed in films:
        if field == "flat":
            case = synthesize_spine(film_seed)
            image, truth = case.image, case.landmarks
            on = np.isfinite(truth).all(axis=1)
        else:
            film = simulate_projected(film_seed, field=field, photometric="MONOCHROME2")
            image, truth, on = film.image, film.landmarks, film.visible
        pred = localizer.predict(image)
        height = image.shape[0]
        sigma = pred.sigma.mean(axis=1)
        error = np.linalg.norm(pred.landmarks - truth, axis=1)
        parts["median"].append((sigma / np.median(sigma))[on])
        parts["typical"].append((100 * sigma / height / typical)[on])
        parts["wrong"].append((100 * error / height > 1.0)[on])
    return {key: np.concatenate(values) for key, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="model (default: the bundled one)")
    parser.add_argument("--n", type=int, default=10, help="films per field of view (and flat)")
    parser.add_argument("--seed", type=int, default=3_300_000, help="first film seed")
    parser.add_argument("--max-marks", type=float, default=15.0, help="percent of all points")
    args = parser.parse_args()

    points = collect(args.checkpoint, args.n, args.seed)
    wrong = points["wrong"]
    rows, best = [], None
    for a, b in itertools.product(MEDIAN_FACTORS, TYPICAL_FACTORS):
        flagged = (points["median"] > a) | (points["typical"] > b)
        catches = 100 * flagged[wrong].mean() if wrong.any() else float("nan")
        marks = 100 * flagged.mean()
        rows.append([fmt(a, 1), fmt(b, 1), fmt(catches, 0), fmt(marks, 0)])
        if marks <= args.max_marks and (best is None or catches > best[2]):
            best = (a, b, catches, marks)
    log(provenance_markdown(provenance()))
    log(
        f"model: {args.checkpoint or 'bundled'}; {args.n} films per field + {args.n} flat from "
        f"seed {args.seed}; {wrong.size} points, {100 * wrong.mean():.1f} % more than 1 % off"
    )
    log(markdown_table(["film-median factor", "typical factor", "catches %", "marks %"], rows))
    if best:
        log(
            f"best with marks <= {args.max_marks:g} %: median factor {best[0]:g}, typical "
            f"factor {best[1]:g} (catches {best[2]:.0f} %, marks {best[3]:.0f} %)"
        )


if __name__ == "__main__":
    main()
