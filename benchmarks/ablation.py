"""Ablation as in the paper's Table VI: training losses x model variants.

Every run uses the same training images, validation set, schedule, augmentation and seed;
only the loss (L1, L2, NFDP without the residual term, NFDP) and the variant (regression,
heatmap) change. Each best checkpoint (selected on validation) is scored on the test split.

Example::

    python benchmarks/ablation.py --data data/synth --out runs/ablation --epochs 100
"""

from __future__ import annotations

import argparse

from common import (
    LOSS_LABELS,
    RESULT_HEADERS,
    add_output_option,
    add_training_options,
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
        "--limit", type=int, default=None, help="use only the first N training images"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=("regression", "heatmap"),
        default=["regression", "heatmap"],
    )
    parser.add_argument(
        "--losses", nargs="+", choices=LOSS_KINDS, default=["l1", "l2", "flow", "nfdp"]
    )
    add_output_option(parser, "ablation")
    return parser


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    device = resolve_device(args.device)
    splits = load_splits(args.data, args.val_fraction, args.max_side)
    sources = splits.train[: args.limit]
    train_samples = load_samples(sources, args.max_side)
    data_summary = {
        "source": str(args.data),
        "train_images": len(train_samples),
        "train_names": [s.name for s in train_samples],
        "validation": splits.val_origin,
        "val_names": [s.name for s in splits.val],
    }
    results, rows = [], []
    for variant in args.variants:
        for loss in args.losses:
            name = f"{variant}-{loss}"
            log(f"[{name}] training on {len(train_samples)} images")
            cfg = TrainConfig(
                variant=variant,
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
                train_samples,
                splits,
                data=args.data,
                out=args.out,
                test_limit=args.test_limit,
                data_summary=data_summary,
            )
            results.append(result)
            rows.append([variant, LOSS_LABELS[loss], *result_row(result)])
    steps = args.epochs * steps_per_epoch(len(train_samples), args.batch_size)
    test_images = results[0]["test"]["images"]
    notes = (
        f"{len(train_samples)} training images, validation: {splits.val_origin} "
        f"({len(splits.val)} images), {test_images} test images of `{args.data}`. "
        f"Schedule for every run: {args.epochs} epochs x batch {args.batch_size} = {steps} "
        f"optimisation steps, input {args.input_size[0]}x{args.input_size[1]}, default "
        f"augmentation, learning rate by variant (regression 1e-3, heatmap 8e-4, linear decay), "
        f"seed {args.seed}, from scratch. Best epoch chosen on validation MRE; test metrics of "
        "that checkpoint. SDR radii are percent of image height."
    )
    publish(
        args.json,
        "Ablation (Table VI): losses and variants",
        provenance([device]),
        vars(args),
        markdown_table(["variant", "loss", *RESULT_HEADERS], rows) + "\n\n" + notes,
        results,
    )


if __name__ == "__main__":
    run_script(main)
