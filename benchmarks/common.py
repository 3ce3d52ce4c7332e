"""Shared helpers of the benchmark scripts: provenance, Markdown tables, output files, dataset
splits, and "train one configuration then evaluate it on the test split".

The scripts import this module as ``common`` (Python puts the script's folder on the path).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, load_checkpoint
from napari_nfdp.core.schema import default_landmark_names
from training.datasets import Sample, SampleSource, open_dataset
from training.evaluate import evaluate
from training.events import EpochDone, ProgressEvent
from training.fit import DEFAULT_MAX_SIDE, load_samples, split_validation
from training.loop import TrainConfig, train

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


# --- provenance -------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when tracked files are modified."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev


def provenance(devices: Sequence[torch.device | str] = ()) -> dict[str, Any]:
    """Command line, machine, date and git revision of this run.

    ``devices`` are the devices the benchmark used; the name of each CUDA one is recorded.
    """
    used = [torch.device(d) for d in devices]
    cuda = sorted({torch.cuda.get_device_name(d) for d in used if d.type == "cuda"})
    return {
        "command": shlex.join(["python", os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_revision(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_devices": cuda,
    }


def provenance_markdown(prov: dict[str, Any]) -> str:
    """Provenance as Markdown lines to print above a table."""
    gpu = ", ".join(prov["cuda_devices"]) or "none used"
    return "\n".join(
        [
            f"- command: `{prov['command']}`",
            f"- machine: {prov['cpu']}, {prov['cpu_count']} CPUs, {prov['torch_threads']} torch "
            f"threads, torch {prov['torch']}, Python {prov['python']}; CUDA: {gpu}",
            f"- date: {prov['date']}, git revision {prov['git']}",
        ]
    )


# --- tables and output files ------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: floats with ``digits`` decimals, NaN / None as "n/a"."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are formatted with :func:`fmt`."""
    cells = [[fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def add_output_option(parser: argparse.ArgumentParser, name: str) -> None:
    """``--json PATH`` (the Markdown goes beside it with the suffix .md)."""
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / f"{name}.json",
        help="where to write the results as JSON; the Markdown table goes beside it as .md "
        "(default: %(default)s)",
    )


def publish(
    path: Path,
    title: str,
    prov: dict[str, Any],
    settings: dict[str, Any],
    body: str,
    results: Any,
) -> None:
    """Print the Markdown report and write it (.md) and the JSON (results + provenance)."""
    markdown = f"## {title}\n\n{provenance_markdown(prov)}\n\n{body}\n"
    print(markdown)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": title,
        "provenance": prov,
        "settings": settings,
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown)
    print(f"written: {path} and {path.with_suffix('.md')}", file=sys.stderr)


def run_script(main: Callable[[], None]) -> None:
    """Call a script's ``main``; a usage or data problem ends it with a one-line message."""
    try:
        main()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


# --- checkpoints ------------------------------------------------------------------------------


def describe_checkpoint(path: str | Path | None) -> dict[str, Any]:
    """Provenance of a checkpoint file: path, SHA-256 prefix, model config, training summary."""
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    checkpoint = load_checkpoint(path)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "config": checkpoint.config.to_dict(),
        "created": checkpoint.meta.get("created"),
        "run_id": checkpoint.training.get("run_id"),
        "epoch": checkpoint.training.get("epoch"),
        "metrics": checkpoint.metrics,
    }


# --- training runs (ablation, data efficiency) ------------------------------------------------


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the scripts that train: data, schedule, input size, output folder."""
    parser.add_argument(
        "--data",
        required=True,
        help="dataset folder with training and test splits (and ideally a validation split)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the training runs")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, nargs=2, default=(512, 256), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training split held out for validation when DATA has no validation "
        "split (one seeded hold-out shared by every run)",
    )
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE)
    parser.add_argument("--test-limit", type=int, default=None, help="score only N test images")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best)")


@dataclass
class Splits:
    """Training sources (not yet read) and the validation samples (in memory)."""

    train: list[SampleSource]
    val: list[Sample]
    val_origin: str


def load_splits(data: str | Path, val_fraction: float, max_side: int) -> Splits:
    """The training sources and the validation samples every run of a benchmark shares.

    The validation set is DATA's ``validation`` split, else a hold-out of the training split
    drawn with seed 0 (independent of the training seed, so every run sees the same one).
    """
    sources = list(open_dataset(data, split="training"))
    try:
        val_sources = list(open_dataset(data, split="validation"))
        origin = "validation split"
    except FileNotFoundError:
        val_sources = []
    if not val_sources:
        sources, val_sources = split_validation(sources, val_fraction, seed=0)
        origin = "held out of the training split (seed 0)"
    if not sources:
        raise ValueError(f"no training images in {data}")
    return Splits(sources, load_samples(val_sources, max_side), origin)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _schedule(train_config: dict[str, Any]) -> dict[str, Any]:
    """A training config without the settings that do not change the result (device, workers)."""
    return {k: v for k, v in train_config.items() if k not in ("device", "num_workers")}


def _epoch_printer(name: str) -> Callable[[ProgressEvent], None]:
    def progress(event: ProgressEvent) -> None:
        if isinstance(event, EpochDone):
            log(
                f"[{name}] epoch {event.epoch}/{event.epochs} loss {event.loss:.3f} "
                f"val MRE {event.val_mre_pct:.3f} % of height ({event.seconds:.1f} s)"
            )

    return progress


def train_and_evaluate(
    name: str,
    cfg: TrainConfig,
    train_samples: Sequence[Sample],
    splits: Splits,
    *,
    data: str | Path,
    out: Path,
    test_limit: int | None = None,
    data_summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` on ``train_samples`` in ``out/name``, select on the validation samples,
    then score the best checkpoint on DATA's test split with :func:`training.evaluate.evaluate`.

    A finished run's result (``result.json``) is reused when its configuration matches (the
    device aside); an interrupted run of the same configuration is resumed; a run folder that
    holds another configuration is an error (choose another ``--out``).
    """
    run_dir = out / name
    key = _jsonable(
        {"train": _schedule(cfg.to_dict()), "data": data_summary or {}, "test_limit": test_limit}
    )
    result_path = run_dir / "result.json"
    if result_path.is_file():
        cached = json.loads(result_path.read_text())
        if cached.pop("key", None) == key:
            log(f"[{name}] reusing {result_path}")
            return cached
    config_path = run_dir / "config.json"
    resume = False
    if config_path.is_file():
        stored = json.loads(config_path.read_text())
        same = (
            _schedule(stored.get("train", {})) == key["train"] and stored.get("data") == key["data"]
        )
        if not same:
            raise ValueError(
                f"{run_dir} holds a run with another configuration; use another --out or delete it"
            )
        resume = True
    start = time.perf_counter()
    best = train(
        cfg,
        train_samples,
        splits.val,
        run_dir,
        landmark_names=default_landmark_names(train_samples[0].landmarks.shape[0]),
        resume=resume,
        data_summary=key["data"],
        progress=_epoch_printer(name),
    )
    seconds = time.perf_counter() - start
    report = evaluate(best, data, split="test", device=cfg.device, limit=test_limit)
    checkpoint = load_checkpoint(best)
    result = {
        "name": name,
        "checkpoint": str(best),
        "best_epoch": checkpoint.training.get("epoch"),
        "val_mre_pct": checkpoint.metrics.get("val_mre_pct"),
        "train_seconds": seconds,
        "resumed": resume,
        "test": report["summary"],
    }
    result_path.write_text(json.dumps({"key": key, **result}, indent=2, default=str) + "\n")
    return _jsonable(result)  # the same form as a reused result (string keys)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimisation steps of one epoch over ``n_images`` (the loop keeps the last short batch)."""
    return -(-n_images // batch_size)


LOSS_LABELS = {"l1": "L1", "l2": "L2", "flow": "NFDP without residual", "nfdp": "NFDP"}


def result_row(result: dict[str, Any]) -> list[Any]:
    """Test metrics of one :func:`train_and_evaluate` result as table cells."""
    test = result["test"]
    sdr = test.get("sdr_pct_height", {})
    return [
        test["mre_px"],
        fmt(test["mre_pct_height"], 3),
        sdr.get("1.0"),
        sdr.get("2.0"),
        test.get("smape"),
        fmt(result["val_mre_pct"], 3),
        result["best_epoch"],
        fmt(result["train_seconds"] / 60.0, 1),
    ]


RESULT_HEADERS = (
    "test MRE px",
    "test MRE % height",
    "SDR 1 %",
    "SDR 2 %",
    "SMAPE %",
    "val MRE % height",
    "best epoch",
    "train min",
)
