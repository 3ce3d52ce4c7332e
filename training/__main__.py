"""Command line: ``python -m training fit|finetune|evaluate|synth``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from training.augment import AugmentConfig
from training.events import Baseline, EpochDone, ProgressEvent, Started


def _print_progress(event: ProgressEvent) -> None:
    if isinstance(event, Started):
        print(f"run {event.run_id}: {event.epochs} epochs x {event.steps_per_epoch} steps")
    elif isinstance(event, Baseline):
        print(f"before fine-tuning: validation MRE {event.val_mre_pct:.3f} % of height")
    elif isinstance(event, EpochDone):
        flag = " *" if event.best else ""
        print(
            f"epoch {event.epoch:>4}/{event.epochs}  loss {event.loss:9.3f}  "
            f"val MRE {event.val_mre_pct:7.3f} % of height  lr {event.lr:.2e}  "
            f"{event.seconds:6.1f} s{flag}",
            flush=True,
        )


def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)"
    )


def _cmd_fit(args: argparse.Namespace) -> None:
    from training.fit import fit
    from training.loop import TrainConfig

    cfg = TrainConfig(
        variant=args.variant,
        loss=args.loss,
        input_size=tuple(args.input_size),
        fit_fraction=args.fit_fraction,
        pyramid_fusion=args.pyramid_fusion,
        epochs=args.epochs or 100,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        amp=not args.no_amp,
        device=args.device,
        num_workers=args.workers,
        augment=AugmentConfig() if not args.no_augment else AugmentConfig.disabled(),
    )
    best = fit(
        args.data,
        args.out,
        cfg,
        val_data=args.val_data,
        val_fraction=args.val_fraction,
        limit=args.limit,
        max_side=args.max_side,
        backbone_weights=args.backbone_weights,
        init_checkpoint=args.init,
        resume=args.resume,
        progress=_print_progress,
    )
    print(f"best checkpoint: {best}")


def _finetune_images(paths: Sequence[str]) -> list[Path]:
    """The images of the given folders (natural order) and image files."""
    from napari_nfdp.io.images import list_images

    images: list[Path] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            images += list_images(path)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"no such image folder or file: {path}")
    return images


def _cmd_finetune(args: argparse.Namespace) -> int:
    from napari_nfdp.core.registry import ModelRegistry
    from training.finetune import finetune_and_publish

    if args.no_publish and not args.out:
        raise ValueError("--no-publish needs --out, the folder the candidate checkpoint goes to")
    annotations = args.annotations
    if annotations is None and len(args.data) == 1:  # the sidecar-dataset layout fit reads
        sub = Path(args.data[0]).expanduser() / "annotations"
        annotations = sub if sub.is_dir() else None
    registry = ModelRegistry.default()
    result = finetune_and_publish(
        registry,
        args.base,
        _finetune_images(args.data),
        annotations,
        epochs=args.epochs,
        device=args.device,
        progress=_print_progress,
        publish=not args.no_publish,
        out=args.out,
        replay=args.replay,
        seed=args.seed,
    )
    if result.status == "failed":
        print(f"error: {result.message}", file=sys.stderr)
        return 2
    print(result.message)
    if result.version is not None:
        print(f"model registry {registry.root}: selected {result.version.id}")
    if result.checkpoint is not None:
        print(f"fine-tuned checkpoint: {result.checkpoint}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import evaluate, format_table, write_report

    report = evaluate(
        args.checkpoint,
        args.data,
        split=args.split,
        radii=args.radii,
        device=args.device,
        limit=args.limit,
    )
    print(format_table(report["summary"]))
    out = write_report(report, args.json or Path(args.data) / f"evaluation-{args.split}.json")
    print(f"report: {out}")


def _cmd_synth(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from napari_nfdp.simulator import simulate_projected, synthesize_spine
    from training.datasets import write_aasce

    seeds = range(args.seed, args.seed + args.n)
    if args.preview:
        from napari_nfdp.simulator.preview import preview

        out = preview(seeds, args.preview)
        print(json.dumps({"preview": str(out), "films": args.n}))
        return

    def case(seed: int):
        projected = args.style == "projected" or (args.style == "mixed" and seed % 2 == 1)
        if projected:  # stored as a reader shows it: bone bright
            film = simulate_projected(seed, photometric="MONOCHROME2")
            return film.image, film.landmarks
        flat = synthesize_spine(seed)
        return flat.image, flat.landmarks

    def cases():
        for seed in tqdm(seeds, desc="synth", disable=not sys.stderr.isatty()):
            image, landmarks = case(seed)
            yield f"synth-{seed:06d}", image, landmarks

    paths = write_aasce(args.out, args.split, cases(), ext=args.ext)
    print(json.dumps({"written": len(paths), "out": str(args.out), "split": args.split}))


def _cmd_export(args: argparse.Namespace) -> None:
    from napari_nfdp.core.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    out = save_checkpoint(
        args.out,
        ckpt.build_model(),
        landmark_names=ckpt.landmark_names,
        flow_state=ckpt.flow_state,
        training=ckpt.training,
        metrics=ckpt.metrics,
        half=not args.float32,
    )
    print(f"exported {args.checkpoint} -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training``."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train a model from scratch on a dataset folder")
    fit.add_argument(
        "--data", required=True, help="dataset folder (AASCE, ISBI 2015, hand, sidecars)"
    )
    fit.add_argument("--out", required=True, help="run folder (checkpoints, log, config)")
    fit.add_argument("--variant", choices=("regression", "heatmap"), default="regression")
    fit.add_argument("--loss", choices=("nfdp", "l1", "l2", "flow"), default="nfdp")
    fit.add_argument("--input-size", type=int, nargs=2, default=(512, 256), metavar=("H", "W"))
    fit.add_argument("--fit-fraction", type=float, default=0.9)
    fit.add_argument("--pyramid-fusion", action="store_true")
    fit.add_argument("--batch-size", type=int, default=8)
    fit.add_argument("--lr", type=float, default=None)
    fit.add_argument("--val-data", default=None, help="separate validation dataset folder")
    fit.add_argument("--val-fraction", type=float, default=0.1)
    fit.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    fit.add_argument("--max-side", type=int, default=1024)
    fit.add_argument("--backbone-weights", default=None, help="torchvision ResNet-18 state dict")
    fit.add_argument(
        "--init", default=None, help="start from this checkpoint's weights (fresh schedule)"
    )
    fit.add_argument("--resume", action="store_true")
    fit.add_argument("--no-amp", action="store_true")
    fit.add_argument("--no-augment", action="store_true")
    fit.add_argument("--workers", type=int, default=0)
    _add_train_options(fit)
    fit.set_defaults(func=_cmd_fit)

    ft = sub.add_parser(
        "finetune",
        help="refit a model on human-corrected sidecars and publish it into the model registry",
        description="Fine-tune on the images whose sidecar (<image>.nfdp.json) holds points a "
        "person placed or moved (model output nobody corrected is not used), as the dock "
        "widget's button does, and publish the result into the model registry "
        "($NAPARI_NFDP_HOME/models, default ~/.napari-nfdp/models) when its validation error "
        "is not worse.",
    )
    ft.add_argument(
        "--data", required=True, nargs="+", help="image folder(s) or files with their sidecars"
    )
    ft.add_argument(
        "--annotations",
        default=None,
        help="folder searched for sidecars first, then next to each image (default: the "
        "annotations/ sub-folder of a single --data folder, if any)",
    )
    ft.add_argument(
        "--base",
        "--checkpoint",
        dest="base",
        default=None,
        help="registry version id (v3, bundled) or checkpoint file to start from "
        "(default: the registry's selected version)",
    )
    ft.add_argument(
        "--out",
        default=None,
        help="run folder kept for the candidate (OUT/best.pt); needed with --no-publish "
        "(default: a temporary folder)",
    )
    ft.add_argument(
        "--no-publish",
        action="store_true",
        help="only write the candidate to --out; leave the model registry unchanged",
    )
    ft.add_argument("--replay", type=int, default=0, help="synthetic replay cases")
    _add_train_options(ft)
    ft.set_defaults(func=_cmd_finetune)

    ev = sub.add_parser("evaluate", help="MRE, SDR, Cobb SMAPE of a checkpoint on a split")
    ev.add_argument("--checkpoint", default=None, help="checkpoint (default: bundled model)")
    ev.add_argument("--data", required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--radii", type=float, nargs="+", default=None)
    ev.add_argument(
        "--json", default=None, help="report path (default: DATA/evaluation-SPLIT.json)"
    )
    ev.add_argument("--limit", type=int, default=None)
    ev.add_argument("--device", default=None)
    ev.set_defaults(func=_cmd_evaluate)

    syn = sub.add_parser("synth", help="write synthetic spine radiographs in the AASCE layout")
    syn.add_argument("--n", type=int, required=True)
    syn.add_argument("--out", required=True)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--split", default="training")
    syn.add_argument("--ext", choices=("jpg", "png"), default="jpg")
    syn.add_argument(
        "--style",
        choices=("flat", "projected", "mixed"),
        default="flat",
        help="flat: the 2-D generator; projected: 3-D anatomy through a cone beam (random "
        "fields of view, landmarks off the film kept); mixed: both, alternating by seed "
        "(default: flat)",
    )
    syn.add_argument(
        "--preview",
        default=None,
        metavar="OUT.png",
        help="write a contact sheet of --n projected films with their landmarks instead",
    )
    syn.set_defaults(func=_cmd_synth)

    exp = sub.add_parser("export", help="write a compact (fp16) copy of a checkpoint for bundling")
    exp.add_argument("--checkpoint", required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument("--float32", action="store_true", help="keep float32 weights")
    exp.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
