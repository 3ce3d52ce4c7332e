"""Command line: ``python -m training fit|finetune|evaluate|synth|export|plot``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from napari_nfdp.cli_help import HelpFormatter, add_version_option
from training.augment import AugmentConfig
from training.console import ConsoleProgress
from training.refine_cli import add_refine_parser
from training.synth import STYLES

DEFAULT_EPOCHS = 100


def _is_main_process() -> bool:
    """False in the processes of ranks 1.. that ``torchrun`` starts: they print no results."""
    return os.environ.get("RANK", "0") == "0"


def _say(text: str) -> None:
    if _is_main_process():
        print(text)


def _end_distributed() -> None:
    """Leave the process group a DDP run joined (torchrun), if any."""
    dist = sys.modules.get("torch.distributed")  # only a run that imported torch has joined one
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _cmd_fit(args: argparse.Namespace) -> None:
    from training.fit import fit
    from training.loop import TrainConfig
    from training.run_config import read_run_config, train_config

    if args.data is None:
        raise ValueError("fit needs --data (or a --config whose run names its dataset)")
    base = train_config(read_run_config(args.config)) if args.config else TrainConfig()
    cfg = replace(
        base,
        variant=args.variant,
        loss=args.loss,
        input_size=tuple(args.input_size),
        fit_fraction=args.fit_fraction,
        pyramid_fusion=args.pyramid_fusion,
        epochs=args.epochs or DEFAULT_EPOCHS,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        amp=not args.no_amp,
        device=args.device,
        num_workers=args.workers,
        augment=AugmentConfig.disabled() if args.no_augment else base.augment,
    )
    progress = ConsoleProgress(bar=args.progress or sys.stderr.isatty())
    try:
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
            progress=progress,
        )
    finally:
        progress.close()
    _say(f"best checkpoint: {best}")


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
    progress = ConsoleProgress(bar=sys.stderr.isatty())
    try:
        result = finetune_and_publish(
            registry,
            args.base,
            _finetune_images(args.data),
            annotations,
            epochs=args.epochs,
            device=args.device,
            progress=progress,
            publish=not args.no_publish,
            out=args.out,
            replay=args.replay,
            seed=args.seed,
        )
    finally:
        progress.close()
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

    from training.datasets import write_aasce
    from training.synth import synth_films

    seeds = range(args.seed, args.seed + args.n)
    if args.preview:
        from napari_nfdp.simulator.preview import preview

        out = preview(seeds, args.preview)
        print(json.dumps({"preview": str(out), "films": args.n}))
        return
    films = synth_films(seeds, args.style, workers=args.workers)
    films = tqdm(films, total=args.n, desc="synth", disable=not sys.stderr.isatty())
    paths = write_aasce(args.out, args.split, films, ext=args.ext)
    print(json.dumps({"written": len(paths), "out": str(args.out), "split": args.split}))


def _cmd_export(args: argparse.Namespace) -> None:
    from napari_nfdp.core.checkpoint import load_checkpoint, save_checkpoint
    from napari_nfdp.core.refine import RefinerConfig

    ckpt = load_checkpoint(args.checkpoint)
    if args.refine_passes is not None:
        if ckpt.refiner is None:
            raise ValueError(f"{args.checkpoint} has no stage 2 to set --refine-passes of")
        if not args.calibrate:
            raise ValueError("--refine-passes changes stage 2's sigma: give --calibrate DATA too")
        config = {**ckpt.refiner["config"], "passes": args.refine_passes}
        ckpt.refiner = {**ckpt.refiner, "config": RefinerConfig.from_dict(config).to_dict()}
    metrics = dict(ckpt.metrics)
    if args.calibrate:
        metrics.update(_typical_sigma(ckpt, args.calibrate, args.calibrate_split))
        print(json.dumps({"calibrated on": args.calibrate, **metrics}))
    out = save_checkpoint(
        args.out,
        ckpt.build_model(),
        landmark_names=ckpt.landmark_names,
        flow_state=ckpt.flow_state,
        training=ckpt.training,
        metrics=metrics,
        half=not args.float32,
        refiner=ckpt.refiner,
    )
    print(f"exported {args.checkpoint} -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def _typical_sigma(ckpt, data: str, split: str) -> dict[str, float]:
    """The checkpoint's usual sigma measured on the films of ``data`` (a held-out set)."""
    import torch

    from napari_nfdp.core.refine import RefinerConfig
    from training.datasets import open_dataset
    from training.fit import DEFAULT_MAX_SIDE, load_samples
    from training.loop import validate

    side = RefinerConfig.from_dict(ckpt.refiner["config"]).max_side if ckpt.refiner else None
    samples = load_samples(open_dataset(data, split), side or DEFAULT_MAX_SIDE)
    result = validate(ckpt.build_model().float(), samples, ckpt.config, torch.device("cpu"))
    metrics = {
        "calibration_mre_pct": result.mre_pct,
        "val_sigma_pct": result.sigma_pct,
        "val_sigma_vertebrae": result.sigma_vertebrae,
        "calibration_images": len(samples),
    }
    if ckpt.refiner is not None:  # the final sigma and error are stage 2's
        from training.refine import calibrate_two_stage

        metrics.update(calibrate_two_stage(ckpt, samples))
    return metrics


def _cmd_plot(args: argparse.Namespace) -> None:
    from training.plot import plot_run

    print(f"wrote {plot_run(args.run, args.out, tuple(args.size))}")


def _parser(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, formatter_class=HelpFormatter, **kwargs)


def _add_train_options(p: argparse.ArgumentParser, epochs: str) -> None:
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default: {epochs})")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split, augmentation and initial weights"
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)"
    )


FIT_EPILOG = """\
--config RUN/config.json (or the run folder) repeats a run: the dataset, its options and every
training setting saved by fit become the defaults, and the options given on the command line
override them, e.g. `fit --config runs/a/config.json --out runs/b --seed 1`.
Under torchrun only rank 0 prints and writes the run folder."""


def _add_fit_parser(sub) -> None:
    fit = _parser(
        sub,
        "fit",
        "train a model from scratch on a dataset folder",
        description="Train a model on the training split of a dataset; the validation split "
        "(or --val-data, or a held-out fraction) selects the best checkpoint.",
        epilog=FIT_EPILOG,
    )
    fit.add_argument(
        "--data",
        default=None,
        help="dataset folder: AASCE, ISBI 2015, hand atlas or sidecars (default: the one "
        "--config names; required without it)",
    )
    fit.add_argument("--out", required=True, help="run folder (checkpoints, log, config)")
    fit.add_argument(
        "--config",
        default=None,
        metavar="CONFIG.json",
        help="repeat the run this config.json (or run folder) describes; flags given "
        "override its values (default: none, the defaults below)",
    )
    fit.add_argument(
        "--variant",
        choices=("regression", "heatmap"),
        default="regression",
        help="network head: direct regression or integral (soft-argmax) heatmaps",
    )
    fit.add_argument(
        "--loss",
        choices=("nfdp", "l1", "l2", "flow"),
        default="nfdp",
        help="nfdp: residual log-likelihood with the flow prior; l1, l2, flow: ablations",
    )
    fit.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=(512, 256),
        metavar=("H", "W"),
        help="network input height and width in pixels",
    )
    fit.add_argument(
        "--fit-fraction",
        type=float,
        default=0.9,
        help="share of the input the film is fitted into (the rest is margin)",
    )
    fit.add_argument(
        "--pyramid-fusion", action="store_true", help="fuse the backbone's feature pyramid"
    )
    fit.add_argument("--batch-size", type=int, default=8, help="images per step (per process)")
    fit.add_argument(
        "--lr",
        type=float,
        default=None,
        help="initial learning rate, decayed linearly to 1%% (default: 1e-3 for regression, "
        "8e-4 for heatmap)",
    )
    fit.add_argument(
        "--val-data",
        default=None,
        help="separate validation dataset folder (default: the validation split of --data, "
        "else --val-fraction of its training images)",
    )
    fit.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training images held out when there is no validation split",
    )
    fit.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training images (default: all)",
    )
    fit.add_argument(
        "--max-side",
        type=int,
        default=1024,
        help="images are kept in memory with their long side at most this many pixels",
    )
    fit.add_argument(
        "--backbone-weights",
        default=None,
        help="torchvision ResNet-18 state dict to start the backbone from (default: random "
        "weights; nothing is downloaded)",
    )
    fit.add_argument(
        "--init",
        default=None,
        help="start from this checkpoint's weights with a fresh schedule (default: none)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out from its last.pt",
    )
    fit.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    fit.add_argument("--no-augment", action="store_true", help="train without augmentation")
    fit.add_argument(
        "--workers", type=int, default=0, help="data loader worker processes (0: in the loop)"
    )
    fit.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar per epoch on stderr even when it is not a terminal",
    )
    _add_train_options(fit, str(DEFAULT_EPOCHS))
    fit.set_defaults(func=_cmd_fit)


def _add_finetune_parser(sub) -> None:
    ft = _parser(
        sub,
        "finetune",
        "refit a model on human-corrected sidecars and publish it into the model registry",
        description="Fine-tune on the images whose sidecar (<image>.nfdp.json) holds points a "
        "person placed or moved (model output nobody corrected is not used), as the dock "
        "widget's button does, and publish the result into the model registry "
        "($NAPARI_NFDP_HOME/models, or ~/.napari-nfdp/models) when its validation error "
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
    ft.add_argument(
        "--replay",
        type=int,
        default=0,
        help="synthetic spine films mixed in against forgetting",
    )
    _add_train_options(ft, "enough for about 60 steps, at least 3")
    ft.set_defaults(func=_cmd_finetune)


def _add_evaluate_parser(sub) -> None:
    ev = _parser(sub, "evaluate", "MRE, SDR, Cobb SMAPE of a checkpoint on a split")
    ev.add_argument("--checkpoint", default=None, help="checkpoint (default: the bundled model)")
    ev.add_argument("--data", required=True, help="dataset folder")
    ev.add_argument("--split", default="test", help="split of --data to evaluate on")
    ev.add_argument(
        "--radii",
        type=float,
        nargs="+",
        default=None,
        help="SDR radii in mm, for films with a pixel spacing (default: 2 2.5 3 4); SDR at 1 "
        "and 2 %% of the height is always reported",
    )
    ev.add_argument(
        "--json", default=None, help="report path (default: DATA/evaluation-SPLIT.json)"
    )
    ev.add_argument(
        "--limit", type=int, default=None, help="evaluate the first N images (default: all)"
    )
    ev.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ev.set_defaults(func=_cmd_evaluate)


def _add_synth_parser(sub) -> None:
    syn = _parser(sub, "synth", "write synthetic spine radiographs in the AASCE layout")
    syn.add_argument("--n", type=int, required=True, help="number of films")
    syn.add_argument("--out", required=True, help="dataset folder (created or added to)")
    syn.add_argument("--seed", type=int, default=0, help="seed of the first film (then +1 each)")
    syn.add_argument("--split", default="training", help="split the films go into")
    syn.add_argument("--ext", choices=("jpg", "png"), default="jpg", help="image file format")
    syn.add_argument(
        "--style",
        choices=STYLES,
        default="flat",
        help="flat: the 2-D generator; projected: 3-D anatomy through a cone beam (random "
        "fields of view, landmarks off the film kept); mixed: both, alternating by seed",
    )
    syn.add_argument(
        "--preview",
        default=None,
        metavar="OUT.png",
        help="write a contact sheet of --n projected films with their landmarks instead "
        "(default: write the dataset)",
    )
    syn.add_argument(
        "--workers", type=int, default=1, help="processes making films (the order is kept)"
    )
    syn.set_defaults(func=_cmd_synth)


def build_parser(fit_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``python -m training``; ``fit_defaults`` (from a run's
    config.json) replace the defaults of the ``fit`` options."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, fine-tune, evaluate, export and plot NFDP landmark models; write "
        "synthetic spine films. `python -m training COMMAND --help` describes a command.",
        formatter_class=HelpFormatter,
    )
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_fit_parser(sub)
    if fit_defaults:
        sub.choices["fit"].set_defaults(**fit_defaults)
    _add_finetune_parser(sub)
    _add_evaluate_parser(sub)
    _add_synth_parser(sub)
    add_refine_parser(sub, _parser)

    exp = _parser(sub, "export", "write a compact (fp16) copy of a checkpoint for bundling")
    exp.add_argument("--checkpoint", required=True, help="checkpoint to copy")
    exp.add_argument("--out", required=True, help="path of the copy")
    exp.add_argument("--float32", action="store_true", help="keep float32 weights")
    exp.add_argument(
        "--calibrate",
        default=None,
        metavar="DATA",
        help="measure the model's usual sigma (the reference of Prediction.review and of the "
        "'No spine found?' check) on this held-out dataset and store it in the copy "
        "(default: keep the checkpoint's validation figures)",
    )
    exp.add_argument("--calibrate-split", default="test", help="split of --calibrate to use")
    exp.add_argument(
        "--refine-passes",
        type=int,
        default=None,
        help="stage-2 passes of a two-stage model (2: a cascade) (default: as trained)",
    )
    exp.set_defaults(func=_cmd_export)

    plot = _parser(
        sub,
        "plot",
        "draw a run's training loss and validation error per epoch as a PNG",
        description="Draw the training loss and the validation MRE of RUN/log.jsonl.",
    )
    plot.add_argument("run", help="run folder (or its log.jsonl)")
    plot.add_argument("--out", default=None, help="PNG to write (default: RUN/curves.png)")
    plot.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=(1000, 700),
        metavar=("W", "H"),
        help="picture width and height in pixels",
    )
    plot.set_defaults(func=_cmd_plot)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``fit --config`` first reads the run's saved settings."""
    args = build_parser().parse_args(argv)
    if args.command == "fit" and args.config is not None:
        from training.run_config import fit_defaults, read_run_config

        try:
            defaults = fit_defaults(read_run_config(args.config))
        except (ValueError, FileNotFoundError) as error:
            build_parser().error(f"--config: {error}")
        args = build_parser(defaults).parse_args(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        status = args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        _end_distributed()
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
