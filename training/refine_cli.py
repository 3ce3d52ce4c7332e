"""``python -m training refine``: add a trained stage-2 refiner to a stage-1 checkpoint."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable

DEFAULT_EPOCHS = 12


def _cmd_refine(args: argparse.Namespace) -> None:
    from napari_nfdp.core.checkpoint import load_checkpoint
    from napari_nfdp.core.refine import RefinerConfig
    from training.datasets import open_dataset
    from training.fit import load_samples, split_validation
    from training.refine import train_refiner

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    base = load_checkpoint(args.init)
    config = RefinerConfig(
        patch_size=args.patch_size, context=args.context, max_side=args.max_side, passes=args.passes
    )
    sources = open_dataset(args.data, split="training")[: args.limit]
    if args.val_data:
        val_sources = open_dataset(args.val_data, split=args.val_split)
    else:
        sources, val_sources = split_validation(sources, 0.1, args.seed)
    best = train_refiner(  # films kept in memory at the working-image size of stage 2
        base,
        load_samples(sources, config.max_side, args.workers),
        load_samples(val_sources, config.max_side, args.workers),
        args.out,
        config=config,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        workers=args.workers,
        seed=args.seed,
        device=args.device,
    )
    print(json.dumps({"best": str(best)}))


def add_refine_parser(sub, make_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the ``refine`` command on the ``python -m training`` subparsers."""
    p = make_parser(
        sub,
        "refine",
        "train stage 2 (per-vertebra corner refinement) on top of a stage-1 checkpoint",
        description="Patches around each true vertebra, jittered as much as stage 1 errs on the "
        "validation films; the best refiner (lowest two-stage validation MRE) is saved with "
        "stage 1 as OUT/best.pt.",
    )
    p.add_argument("--data", required=True, help="dataset folder (its training split)")
    p.add_argument("--init", required=True, help="the stage-1 checkpoint")
    p.add_argument("--out", required=True, help="run folder (best.pt, log.jsonl)")
    p.add_argument(
        "--val-data",
        default=None,
        help="validation dataset (default: 10 %% of --data's training films)",
    )
    p.add_argument("--val-split", default="validation", help="split of --val-data to validate on")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="training epochs")
    p.add_argument("--batch-size", type=int, default=64, help="patches per step")
    p.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (linear decay)")
    p.add_argument("--patch-size", type=int, default=64, help="patch side, pixels")
    p.add_argument("--context", type=float, default=2.2, help="patch side over vertebra size")
    p.add_argument("--max-side", type=int, default=1024, help="working-image long side, pixels")
    p.add_argument(
        "--passes", type=int, default=1, help="stage-2 passes at inference (2: a cascade)"
    )
    p.add_argument(
        "--limit", type=int, default=None, help="use only the first N training films (default: all)"
    )
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, jitter and weights")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=_cmd_refine)
