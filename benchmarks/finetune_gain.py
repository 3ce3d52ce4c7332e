"""What fine-tuning on a few corrected films buys, single-stage against two-stage (issue 13).

The corrected films are --n projected simulator films (their true landmarks standing in for a
person's corrections); the gain is measured on --test other films of the same kind, as MRE of
the points on the film (percent of the film height), before and after, with the wall time of
``training.finetune`` (default schedule). The single-stage row is the same checkpoint with its
stage 2 left out, so both start from the same stage 1.

Example::

    python benchmarks/finetune_gain.py --checkpoint napari_nfdp/models/spine_default.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
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

from napari_nfdp.core.checkpoint import (
    DEFAULT_MODEL_PATH,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from napari_nfdp.core.localizer import Localizer
from napari_nfdp.simulator import simulate_projected
from training.finetune import finetune


def _mre_pct(checkpoint: Checkpoint, films) -> float:
    localizer = Localizer(checkpoint, torch.device("cpu"))
    errors = []
    for film in films:
        found = localizer.predict(film.image).landmarks
        error = np.linalg.norm(found - film.landmarks, axis=1)[film.visible]
        errors.append(100 * error / film.image.shape[0])
    return float(np.concatenate(errors).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a two-stage model (default: bundled)")
    parser.add_argument("--n", type=int, default=12, help="corrected films to fine-tune on")
    parser.add_argument("--test", type=int, default=24, help="films the gain is measured on")
    parser.add_argument("--seed", type=int, default=3_700_000, help="first film seed")
    parser.add_argument("--field", default="chest", help="field of view of every film")
    add_output_option(parser, "finetune_gain")
    args = parser.parse_args()

    def film(seed: int):
        return simulate_projected(seed, field=args.field, photometric="MONOCHROME2")

    corrected = [film(s) for s in range(args.seed, args.seed + args.n)]
    test = [film(s) for s in range(args.seed + args.n, args.seed + args.n + args.test)]
    two = load_checkpoint(args.checkpoint or DEFAULT_MODEL_PATH)
    if two.refiner is None:
        raise SystemExit("the checkpoint has no stage 2")
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="nfdp-gain-") as tmp:
        for name, ckpt in (
            ("single stage", dataclasses.replace(two, refiner=None)),
            ("two stages", two),
        ):
            base = save_checkpoint(
                Path(tmp) / f"{name}.pt",
                ckpt.build_model(),
                landmark_names=ckpt.landmark_names,
                flow_state=ckpt.flow_state,
                training=ckpt.training,
                metrics=ckpt.metrics,
                refiner=ckpt.refiner,
            )
            before = _mre_pct(ckpt, test)
            log(f"{name}: before {before:.3f} %, fine-tuning on {args.n} films")
            start = time.perf_counter()
            out = finetune(
                base,
                [f.image for f in corrected],
                [np.where(f.visible[:, None], f.landmarks, np.nan) for f in corrected],
                Path(tmp) / name.replace(" ", "_"),
            )
            seconds = time.perf_counter() - start
            after = _mre_pct(load_checkpoint(out), test)
            results[name] = {"before": before, "after": after, "seconds": seconds}
            rows.append([name, fmt(before, 3), fmt(after, 3), fmt(seconds, 0)])
    table = markdown_table(
        ["model", "MRE % before", "MRE % after", "fine-tuning wall time, s"], rows
    )
    notes = (
        f"{args.n} corrected and {args.test} test films of the `{args.field}` field, seeds from "
        f"{args.seed}; checkpoint `{describe_checkpoint(args.checkpoint)['path']}`. Points off "
        "the film are left out of the corrections and of the error."
    )
    publish(
        args.json,
        "Fine-tuning gain",
        provenance(["cpu"]),
        vars(args),
        f"{table}\n\n{notes}",
        results,
    )


if __name__ == "__main__":
    run_script(main)
