"""Speed and memory: inference latency and throughput, a training step, fine-tuning, peak RSS.

Per device (CPU with the machine's threads; CUDA too when available):

- end-to-end ``Localizer.predict`` on a 2500 x 1000 uint16 synthetic film (batch 1, median of
  --runs after warm-up), its preprocessing alone, and in the same loop the bare network and
  bare backbone forward passes at the model's input size, with the latency ratios;
- ``predict_batch`` throughput at ``--batch-size`` (default 16; images/s);
- on CUDA, the bare network's throughput under AMP (fp16 autocast) at batch 1 and 32;
- one training step: batch 8, NFDP loss, forward + backward + Adam step (AMP on CUDA, as in
  training);
- wall time of ``training.finetune`` on corrected synthetic films with its default schedule;
- peak resident memory of the process (``ru_maxrss``) after each phase.

Example::

    python benchmarks/speed.py --checkpoint napari_nfdp/models/spine_default.pt
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, Checkpoint, save_checkpoint
from napari_nfdp.core.localizer import Localizer, resolve_device
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.preprocess import prepare_input
from napari_nfdp.core.refine import refinable
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.simulator import synthesize_spine
from training.events import ProgressEvent, Started
from training.finetune import finetune
from training.flow import RealNVP
from training.loop import NFDPModel, training_step

FILM_SHAPE = (2500, 1000)
BATCH = 16
AMP_BATCHES = (1, 32)
TRAIN_BATCH = 8


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(seconds: list[float]) -> dict[str, float]:
    """Median and 10th / 90th percentiles in milliseconds."""
    ms = np.asarray(seconds) * 1000.0
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "runs": len(ms),
    }


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def load_model(checkpoint: str | None, device: torch.device) -> tuple[Localizer, dict[str, Any]]:
    """The checkpoint's Localizer; without one, the bundled model, else an untrained model of
    the default configuration (said so in the description)."""
    if checkpoint is not None or DEFAULT_MODEL_PATH.is_file():
        return Localizer.load(checkpoint, device=str(device)), describe_checkpoint(checkpoint)
    config = ModelConfig(variant="regression", num_landmarks=len(SPINE_LANDMARK_NAMES))
    torch.manual_seed(0)
    state = LandmarkNet(config).state_dict()
    untrained = Checkpoint(config=config, landmark_names=SPINE_LANDMARK_NAMES, model_state=state)
    description = {
        "path": None,
        "note": f"untrained model of the default config ({DEFAULT_MODEL_PATH} is missing)",
        "config": config.to_dict(),
    }
    return Localizer(untrained, device), description


def bench_amp_network(loc: Localizer, runs: int) -> dict[str, float]:
    """Images/s of the bare network under fp16 autocast on CUDA, per batch size."""
    result = {}
    for size in AMP_BATCHES:
        x = torch.randn(size, 1, *loc.config.input_size, device=loc.device)

        @torch.inference_mode()
        def forward(x: torch.Tensor = x) -> None:
            with torch.autocast("cuda", dtype=torch.float16):
                loc.model(x)

        for _ in range(3):
            forward()
        seconds = statistics.median(_timed(forward, loc.device) for _ in range(runs))
        result[str(size)] = size / seconds
    return result


def _gflops(module: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOPs of one forward pass of ``module`` on ``x`` (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(x)
    return counter.get_total_flops() / 1e9


def bench_stages(loc: Localizer, film: np.ndarray, runs: int) -> dict[str, Any]:
    """The paper's Table I columns per stage: parameters, GFLOPs and films/s of each network
    on this film (stage 2: one patch per vertebra stage 1 places on it, in one batch), and the
    whole stage-2 step (patch sampling + network + mapping back) in ms."""
    device = loc.device
    x = torch.randn(1, 1, *loc.config.input_size, device=device)
    stages: dict[str, Any] = {"stage1": _stage(loc.model, x, runs, device)}
    if loc.refiner is not None:
        refiner, loc.refiner = loc.refiner, None
        first = loc.predict(film)
        loc.refiner = refiner
        size = refiner.config.patch_size
        vertebrae = int(refinable(first.visible).sum())
        patches = torch.randn(vertebrae, 1, size, size, device=device)
        stages["stage2"] = {
            **_stage(refiner.net, patches, runs, device),
            "patches": vertebrae,
            "step": _stats(
                [
                    _timed(
                        lambda: refiner(film, first.landmarks, first.sigma, first.visible), device
                    )
                    for _ in range(runs)
                ]
            ),
        }
    return stages


def _stage(net: torch.nn.Module, x: torch.Tensor, runs: int, device: torch.device) -> dict:
    @torch.inference_mode()
    def forward() -> None:
        net(x)

    forward()
    seconds = statistics.median(_timed(forward, device) for _ in range(runs))
    return {
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "gflops": _gflops(net, x),
        "films_per_s": 1.0 / seconds,
    }


def bench_inference(
    loc: Localizer, film: np.ndarray, runs: int, warmup: int, batch_runs: int, batch: int = BATCH
) -> dict[str, Any]:
    """Predict, preprocessing, network and backbone forward (interleaved), batch throughput."""
    device = loc.device
    x = torch.randn(1, 1, *loc.config.input_size, device=device)

    @torch.inference_mode()
    def network() -> None:
        loc.model(x)

    @torch.inference_mode()
    def backbone() -> None:
        loc.model.backbone(x)

    def preprocess() -> None:
        prepare_input(film, loc.config.input_size, loc.config.fit_fraction)

    steps = {
        "predict": lambda: loc.predict(film),
        "preprocess": preprocess,
        "network_forward": network,
        "backbone_forward": backbone,
    }
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):  # interleaved, so load changes hit every measurement alike
        for name, fn in steps.items():
            times[name].append(_timed(fn, device))
    result: dict[str, Any] = {name: _stats(t) for name, t in times.items()}
    predict_ms = result["predict"]["median_ms"]
    result["ratio_predict_network"] = predict_ms / result["network_forward"]["median_ms"]
    result["ratio_predict_backbone"] = predict_ms / result["backbone_forward"]["median_ms"]

    films = [film] * batch
    loc.predict_batch(films, batch_size=batch)
    batch_times = [
        _timed(lambda: loc.predict_batch(films, batch_size=batch), device)
        for _ in range(batch_runs)
    ]
    result["predict_batch"] = {
        **_stats(batch_times),
        "batch": batch,
        "images_per_s": batch / statistics.median(batch_times),
    }
    if device.type == "cuda":
        result["amp_network_images_per_s"] = bench_amp_network(loc, runs)
    return result


def bench_train_step(config: ModelConfig, device: torch.device, steps: int) -> dict[str, Any]:
    """One optimisation step as the training loop does it (AMP on CUDA), median of ``steps``."""
    torch.manual_seed(0)
    model = NFDPModel(LandmarkNet(config), RealNVP(), "nfdp").to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    images = torch.randn(TRAIN_BATCH, 1, *config.input_size, device=device)
    target = (torch.rand(TRAIN_BATCH, config.num_landmarks, 2, device=device) - 0.5) * 0.8
    visible = torch.ones(TRAIN_BATCH, config.num_landmarks, device=device)

    def step() -> None:
        training_step(model, optimizer, scaler, (images, target, visible), amp)

    for _ in range(2):
        step()
    return {**_stats([_timed(step, device) for _ in range(steps)]), "batch": TRAIN_BATCH}


def bench_finetune(
    loc: Localizer, description: dict[str, Any], device: torch.device, n_images: int, seed: int
) -> dict[str, Any]:
    """Wall time of ``training.finetune`` (default schedule) on corrected synthetic films."""
    cases = [synthesize_spine(seed + 5000 + i) for i in range(n_images)]
    schedule: dict[str, Any] = {}

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, Started) and event.stage == 1:
            schedule.update(epochs=event.epochs, steps_per_epoch=event.steps_per_epoch)
        elif isinstance(event, Started):  # a two-stage model's stage 2 is refitted after it
            schedule.update(stage2_epochs=event.epochs, stage2_steps=event.steps_per_epoch)

    with tempfile.TemporaryDirectory(prefix="nfdp-speed-") as tmp:
        base = description["path"]
        if base is None:
            base = save_checkpoint(
                Path(tmp) / "untrained.pt",
                loc.model,
                landmark_names=loc.landmark_names,
                flow_state=RealNVP().state_dict(),
            )
        start = time.perf_counter()
        finetune(
            base,
            [c.image for c in cases],
            [c.landmarks for c in cases],
            Path(tmp) / "run",
            progress=progress,
            seed=seed,
            device=str(device),
        )
        seconds = time.perf_counter() - start
    steps = schedule.get("epochs", 0) * schedule.get("steps_per_epoch", 0)
    return {"images": n_images, "seconds": seconds, "steps": steps, **schedule}


def bench_device(args: argparse.Namespace, device: torch.device, film: np.ndarray) -> dict:
    """Every measurement on one device."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loc, description = load_model(args.checkpoint, device)
    log(f"[{device}] inference")
    result: dict[str, Any] = {"device": str(device), "model": description}
    result["inference"] = bench_inference(
        loc, film, args.runs, args.warmup, args.batch_runs, args.batch_size
    )
    result["stages"] = bench_stages(loc, film, args.runs)
    result["peak_rss_mib_after_inference"] = _peak_rss_mib()
    log(f"[{device}] training step")
    result["train_step"] = bench_train_step(loc.config, device, args.train_steps)
    result["peak_rss_mib_after_train_step"] = _peak_rss_mib()
    if args.finetune_images > 0:
        log(f"[{device}] fine-tuning on {args.finetune_images} images")
        result["finetune"] = bench_finetune(
            loc, description, device, args.finetune_images, args.seed
        )
        result["peak_rss_mib_after_finetune"] = _peak_rss_mib()
    if device.type == "cuda":
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _range(stats: dict[str, float]) -> str:
    return f"{stats['median_ms']:.1f} ({stats['p10_ms']:.1f}-{stats['p90_ms']:.1f})"


def _table(results: list[dict[str, Any]]) -> str:
    size = "x".join(str(s) for s in results[0]["model"]["config"]["input_size"])
    batch = results[0]["inference"]["predict_batch"]["batch"]
    rows: list[list[Any]] = [
        ["predict, 2500x1000 uint16, batch 1: median ms (p10-p90)"],
        ["  of which preprocessing (prepare_input), ms"],
        [f"network forward at {size}, batch 1, ms"],
        [f"backbone forward at {size}, batch 1, ms"],
        ["predict / network forward (target <= 1.3 on CPU)"],
        ["predict / backbone forward"],
        [f"predict_batch throughput, batch {batch}, images/s"],
        ["network forward under AMP, batch 1 / 32, images/s (CUDA)"],
        [f"training step, batch {TRAIN_BATCH}, NFDP, fwd+bwd+Adam, ms"],
        ["fine-tuning wall time, s (target <= 180 on 2 CPU cores)"],
        ["peak RSS after inference / training step / fine-tuning, MiB"],
        ["CUDA peak allocated, MiB"],
        ["stage 1 network: params M / GFLOPs / films per s"],
        ["stage 2 network (one patch per vertebra): params M / GFLOPs / films per s"],
        ["stage 2 step (patches + network + map back), ms"],
    ]
    for r in results:
        inf = r["inference"]
        ft = r.get("finetune")
        rss = [r.get(f"peak_rss_mib_after_{k}") for k in ("inference", "train_step", "finetune")]
        cells = [
            _range(inf["predict"]),
            _range(inf["preprocess"]),
            _range(inf["network_forward"]),
            _range(inf["backbone_forward"]),
            fmt(inf["ratio_predict_network"]),
            fmt(inf["ratio_predict_backbone"]),
            fmt(inf["predict_batch"]["images_per_s"], 1),
            " / ".join(fmt(v, 0) for v in inf.get("amp_network_images_per_s", {}).values())
            or "n/a",
            _range(r["train_step"]),
            f"{ft['seconds']:.1f} ({ft['images']} images, {ft['steps']} steps)" if ft else "n/a",
            " / ".join(fmt(v, 0) for v in rss),
            fmt(r.get("cuda_peak_allocated_mib"), 0),
            *_stage_cells(r["stages"]),
        ]
        for row, cell in zip(rows, cells, strict=True):
            row.append(cell)
    return markdown_table(["measurement", *(r["device"] for r in results)], rows)


def _stage_cells(stages: dict[str, Any]) -> list[str]:
    def columns(stage: dict[str, Any] | None) -> str:
        if stage is None:
            return "n/a (single-stage model)"
        return f"{stage['params_m']:.2f} / {stage['gflops']:.2f} / {stage['films_per_s']:.1f}"

    second = stages.get("stage2")
    step = _range(second["step"]) if second else "n/a"
    return [columns(stages["stage1"]), columns(second), step]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint (default: the bundled model, else an untrained default model)",
    )
    default_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    parser.add_argument("--device", nargs="+", default=default_devices, help="devices to measure")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch CPU threads (default: the CPUs this process may use, %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=50, help="timed predict runs")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-runs", type=int, default=5, help="timed predict_batch runs")
    parser.add_argument(
        "--batch-size", type=int, default=BATCH, help="predict_batch batch size (default: 16)"
    )
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps")
    parser.add_argument(
        "--finetune-images", type=int, default=20, help="corrected films to fine-tune on (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    add_output_option(parser, "speed")
    return parser


def main() -> None:
    """Run the benchmark."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    devices = [resolve_device(d) for d in args.device]
    load = os.getloadavg()
    film = synthesize_spine(args.seed, shape=FILM_SHAPE).image
    results = [bench_device(args, device, film) for device in devices]
    model = results[0]["model"]
    source = model.get("note") or f"checkpoint `{model['path']}` (sha256 {model['sha256']})"
    notes = (
        f"Model: {source}. Times are wall-clock medians with 10th-90th percentiles; predict and "
        "the forward passes are measured in one interleaved loop of "
        f"{args.runs} runs after {args.warmup} warm-up rounds (forward passes on a preallocated "
        f"input tensor under inference mode). Fine-tuning uses training.finetune's default "
        'schedule on exact synthetic landmarks (the "corrected" annotations), a fifth held '
        "out for validation. Peak RSS is the process maximum so far (it includes earlier "
        f"phases and devices). Load average at start: {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (1 / 5 / 15 min)."
    )
    publish(
        args.json,
        "Speed and memory",
        provenance(devices),
        vars(args),
        _table(results) + "\n\n" + notes,
        results,
    )


if __name__ == "__main__":
    run_script(main)
