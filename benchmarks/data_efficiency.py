"""Data efficiency as in the paper's Table IV: NFDP against baseline losses on few images.

Training sets are nested (the first N training images, N in --sizes); every run shares the
validation and test sets and the same number of optimisation steps: each epoch walks over
the N images repeated up to the largest size (fresh random augmentation on every pass), so
epochs, learning-rate schedule and validation checks are the same for every size.

Example::

    python benchmarks/data_efficiency.py --data data/synth --out runs/data_efficiency \\
        --epochs 100 --losses nfdp l1 l2
"""

from __future__ import annotations

import argparse
from typing import Any

from common import (
    LOSS_LABELS,
    RESULT_HEADERS,
    add_output_option,
    add_training_options,
    fmt,
    load_splits,
    log,
    markdown_table,
    provenance,
    publish,
    result_row,
    run_script,
    steps_per_epoch,
    train_and_evaluate,
)

from napari_nfdp.core.localizer import resolve_device
from training.augment import AugmentConfig
from training.fit import load_samples
from training.loop import TrainConfig
from training.losses import LOSS_KINDS


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_training_options(parser)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[15, 30, 60, 120], help="training set sizes"
    )
    parser.add_argument("--losses", nargs="+", choices=LOSS_KINDS, default=["nfdp", "l1"])
    parser.add_argument("--variant", choices=("regression", "heatmap"), default="regression")
    add_output_option(parser, "data_efficiency")
    return parser


def _comparison(sizes: list[int], losses: list[str], results: dict[tuple[int, str], Any]) -> str:
    """One row per size: test MRE (% of height) and SMAPE of every loss, and the best by MRE."""
    headers = ["training images"]
    headers += [f"{LOSS_LABELS[loss]} MRE % height" for loss in losses]
    headers += [f"{LOSS_LABELS[loss]} SMAPE %" for loss in losses]
    headers.append("lowest MRE")
    rows = []
    for size in sizes:
        tests = [results[size, loss]["test"] for loss in losses]
        mre = [t["mre_pct_height"] for t in tests]
        best = losses[min(range(len(losses)), key=lambda i: mre[i])]
        rows.append(
            [
                size,
                *(fmt(m, 3) for m in mre),
                *(t.get("smape") for t in tests),
                LOSS_LABELS[best],
            ]
        )
    return markdown_table(headers, rows)


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    sizes = sorted(set(args.sizes))
    if sizes[0] < 1:
        raise ValueError("training set sizes must be positive")
    device = resolve_device(args.device)
    splits = load_splits(args.data, args.val_fraction, args.max_side)
    if len(splits.train) < sizes[-1]:
        raise ValueError(
            f"{args.data} has {len(splits.train)} training images; --sizes asks for {sizes[-1]}"
        )
    pool = load_samples(splits.train[: sizes[-1]], args.max_side)
    per_epoch = sizes[-1]  # samples per epoch for every size
    steps = args.epochs * steps_per_epoch(per_epoch, args.batch_size)
    results: dict[tuple[int, str], Any] = {}
    rows = []
    for size in sizes:
        subset = pool[:size]
        repeated = [subset[i % size] for i in range(per_epoch)]
        data_summary = {
            "source": str(args.data),
            "train_images": size,
            "samples_per_epoch": per_epoch,
            "train_names": [s.name for s in subset],
            "validation": splits.val_origin,
            "val_names": [s.name for s in splits.val],
        }
        for loss in args.losses:
            name = f"{args.variant}-n{size}-{loss}"
            log(f"[{name}] training on {size} images, {per_epoch} samples per epoch")
            cfg = TrainConfig(
                variant=args.variant,
                loss=loss,
                input_size=tuple(args.input_size),
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                device=str(device),
                augment=AugmentConfig(),
            )
            result = train_and_evaluate(
                name,
                cfg,
                repeated,
                splits,
                data=args.data,
                out=args.out,
                test_limit=args.test_limit,
                data_summary=data_summary,
            )
            results[size, loss] = result
            rows.append([size, LOSS_LABELS[loss], *result_row(result)])
    test_images = next(iter(results.values()))["test"]["images"]
    notes = (
        f"Variant {args.variant}; nested training sets (the first N training images of "
        f"`{args.data}`); validation: {splits.val_origin} ({len(splits.val)} images); "
        f"{test_images} test images. Same number of optimisation steps for every run: "
        f"{args.epochs} epochs x {steps_per_epoch(per_epoch, args.batch_size)} steps "
        f"(batch {args.batch_size}) = {steps} steps, because each epoch passes over the N "
        f"images repeated to {per_epoch} samples (each image about {per_epoch}/N times per "
        "epoch, freshly augmented each time); the learning-rate schedule and the number of "
        f"validation checks are therefore identical. Input {args.input_size[0]}x"
        f"{args.input_size[1]}, default augmentation, seed {args.seed}, from scratch; best "
        "epoch chosen on validation MRE."
    )
    body = "\n\n".join(
        [
            _comparison(sizes, args.losses, results),
            markdown_table(["training images", "loss", *RESULT_HEADERS], rows),
            notes,
        ]
    )
    publish(
        args.json,
        "Data efficiency (Table IV): test error against training set size",
        provenance([device]),
        vars(args),
        body,
        [{"size": size, "loss": loss, **r} for (size, loss), r in results.items()],
    )


if __name__ == "__main__":
    run_script(main)
