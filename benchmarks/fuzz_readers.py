"""Fuzz the image readers with mutated real files, each read in a child process under limits.

Seeds are real files: the CR films and other images of pydicom-data (JPEG 2000, uncompressed,
deflated, RLE, JPEG) and the 16-bit films of ``sample_data`` (PNG, and the same film written as
zlib TIFF, BMP and JPEG). Each case mutates one seed with one of:

- ``flip``: 1 to 24 random bytes flipped, most of them in the first 4 KB (the headers);
- ``truncate``: the file cut short, usually inside its first 64 KB;
- ``field``: a header field set to an awkward value (0, 1, 65535, 2**31, 2**32 - 1...):
  PNG IHDR (CRC recomputed), TIFF tags and IFD links, BMP header, JPEG SOF, DICOM Rows /
  Columns / NumberOfFrames / SamplesPerPixel / BitsAllocated... (rewritten through pydicom, so
  deflated files stay deflated), the JPEG 2000 SIZ marker, DICOM element and fragment lengths;
- ``chunk``: a random chunk of bytes (random or copied from elsewhere) inserted or overwritten.

Five more cases are not mutations but the largest legal inputs, each a few hundred KB on
disk: MAX_PIXELS images (10000 x 10000) as a 16-bit grey PNG, an 8-bit RGBA zlib TIFF, a
deflated, windowed 16-bit DICOM and a deflated RGB DICOM, and a 16-bit RGBA TIFF at
MAX_DECODED_BYTES (7071 x 7071).
They must be read, and they show what memory a legal input can cost (``--no-extremes`` skips
them).

Each file is read by ``napari_nfdp._reader.read_layer`` (what the napari reader and the
dock widget do: ``read_image`` then ``to_grey_float32``) in a forked child with an address-space
limit (``RLIMIT_AS``) and a CPU-time limit, and a wall-clock limit enforced by the parent. The
outcome is one of: ``refused`` (ImageReadError or ImageError: a clear message),
``refused: out of memory`` (a MemoryError wrapped by the reader: a guard that did not hold),
``read``, ``unexpected exception`` (any other type reached the caller), ``crashed`` (the child
died from a signal) and ``hung`` (over the time limit). The peak memory of each child is its
``ru_maxrss``, which includes the parent's resident pages it starts with (the baseline printed).

Targets: no unexpected exception types, no hangs, no crashes, no refusal caused by running out
of memory, and a peak under 1.5 GB on every input (all inputs are under 10 MB).

Example (a few minutes on 2 cores)::

    python benchmarks/fuzz_readers.py --cases 300 --jobs 2
"""

from __future__ import annotations

import os

# One BLAS thread in every child: its buffers would otherwise count against RLIMIT_AS.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from fuzz_files import (  # noqa: E402
    KINDS,
    OUTCOMES,
    PEAK_TARGET_MB,
    REPO,
    Case,
    make_case,
    make_extremes,
    make_seeds,
)

from napari_nfdp._reader import read_layer  # noqa: E402
from napari_nfdp.core.preprocess import ImageError  # noqa: E402
from napari_nfdp.io.images import ImageReadError  # noqa: E402

# --- running one case in a child --------------------------------------------------------------


def _type_name(error: BaseException) -> str:
    """``zlib.error`` rather than ``error``; builtins stay bare."""
    kind = type(error)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _child(path: str, write_fd: int, memory_bytes: int, cpu_seconds: int) -> None:
    """Runs in the forked child: limits, read, one JSON line to the parent, then _exit."""
    code = 0
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        result: dict[str, Any]
        try:
            data, _, _ = read_layer(path)
            result = {"outcome": "read", "shape": list(np.shape(data))}
        except (ImageReadError, ImageError) as error:
            cause = error.__cause__
            while isinstance(cause, ImageReadError | ImageError):  # re-raised with the name
                cause = cause.__cause__
            out_of_memory = isinstance(cause, MemoryError)
            result = {
                "outcome": "refused: out of memory" if out_of_memory else "refused",
                "error_type": type(error).__name__,
                "cause_type": _type_name(cause) if cause is not None else "",
                "message": str(error)[:400],
            }
        except BaseException as error:  # the point is to see every type
            result = {
                "outcome": "unexpected exception",
                "error_type": _type_name(error),
                "message": str(error)[:400],
            }
        os.write(write_fd, (json.dumps(result) + "\n").encode())
    except BaseException:  # never return into the parent's code
        code = 3
    finally:
        os._exit(code)


@dataclass
class _Running:
    case: Case
    pid: int
    read_fd: int
    start: float
    chunks: list[bytes] = field(default_factory=list)


def _start(case: Case, memory_bytes: int, cpu_seconds: int) -> _Running:
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(case.path, write_fd, memory_bytes, cpu_seconds)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return _Running(case, pid, read_fd, start)


def _drain(run: _Running) -> None:
    while True:
        try:
            chunk = os.read(run.read_fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        run.chunks.append(chunk)


def _finish(run: _Running, status: int, usage: resource.struct_rusage, hung: bool) -> Case:
    _drain(run)
    os.close(run.read_fd)
    case = run.case
    case.seconds = time.perf_counter() - run.start
    case.peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    text = b"".join(run.chunks).decode(errors="replace").strip()
    if hung or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU):
        case.outcome = "hung"
    elif text:
        result = json.loads(text.splitlines()[-1])
        case.outcome = result["outcome"]
        case.error_type = result.get("error_type", "")
        case.cause_type = result.get("cause_type", "")
        case.message = result.get("message", "")
        case.shape = result.get("shape", [])
    else:
        case.outcome = "crashed"
        if os.WIFSIGNALED(status):
            case.message = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            case.message = f"exit status {os.WEXITSTATUS(status)} without a result"
    return case


def run_cases(
    cases: list[Case], jobs: int, timeout: float, memory_mb: int, progress: bool = True
) -> list[Case]:
    """Read every case in a child, ``jobs`` at a time."""
    memory_bytes = memory_mb << 20
    cpu_seconds = int(timeout) + 2
    pending = list(cases)
    running: list[_Running] = []
    done: list[Case] = []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(_start(pending.pop(0), memory_bytes, cpu_seconds))
        select.select([r.read_fd for r in running], [], [], 0.02)
        for run in list(running):
            _drain(run)
            pid, status, usage = os.wait4(run.pid, os.WNOHANG)
            hung = False
            if pid == 0:
                if time.perf_counter() - run.start <= timeout:
                    continue
                os.kill(run.pid, signal.SIGKILL)
                _, status, usage = os.wait4(run.pid, 0)
                hung = True
            running.remove(run)
            done.append(_finish(run, status, usage, hung))
            if progress and len(done) % 25 == 0:
                print(f"{len(done)}/{len(cases)} cases", file=sys.stderr, flush=True)
    return sorted(done, key=lambda c: c.index)


def baseline_mb() -> float:
    """ru_maxrss of a child that does nothing: the memory every child starts with."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    _, _, usage = os.wait4(pid, 0)
    return usage.ru_maxrss / 1024


# --- report ---------------------------------------------------------------------------------


def summary_rows(cases: list[Case]) -> list[list[Any]]:
    """One row per outcome: count, share, median and max seconds, max peak memory."""
    rows = []
    for outcome in OUTCOMES:
        group = [c for c in cases if c.outcome == outcome]
        if not group:
            rows.append([outcome, 0, "0 %", "n/a", "n/a", "n/a"])
            continue
        seconds = [c.seconds for c in group]
        rows.append(
            [
                outcome,
                len(group),
                f"{100 * len(group) / len(cases):.0f} %",
                f"{float(np.median(seconds)):.2f}",
                f"{max(seconds):.2f}",
                f"{max(c.peak_mb for c in group):.0f}",
            ]
        )
    rows.append(
        [
            "**all**",
            len(cases),
            "100 %",
            f"{float(np.median([c.seconds for c in cases])):.2f}",
            f"{max(c.seconds for c in cases):.2f}",
            f"{max(c.peak_mb for c in cases):.0f}",
        ]
    )
    return rows


def _cell(text: str, limit: int = 110) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def case_rows(cases: list[Case]) -> list[list[Any]]:
    """Table rows describing individual cases."""
    return [
        [
            c.index,
            c.seed,
            f"{c.mutation}: {_cell(c.detail, 50)}",
            f"{c.size / 1e6:.2f}",
            c.outcome,
            f"{c.seconds:.2f}",
            f"{c.peak_mb:.0f}",
            _cell(f"{c.error_type}{' <- ' + c.cause_type if c.cause_type else ''}: {c.message}")
            if c.error_type or c.message
            else "",
        ]
        for c in cases
    ]


def main() -> None:
    """Parse the options, make and read the cases, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="mutated files (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=2, help="children at a time (default: 2)")
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds per file (default: 20)"
    )
    parser.add_argument(
        "--memory-mb",
        type=int,
        default=3072,
        help="address-space limit of each child in MiB (default: 3072)",
    )
    parser.add_argument("--worst", type=int, default=10, help="worst cases listed (default: 10)")
    parser.add_argument(
        "--no-extremes",
        action="store_true",
        help="skip the largest legal inputs (MAX_PIXELS images, tiny on disk)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the mutated files in this folder"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "fuzz_readers.json",
        help="where to write the results as JSON; the Markdown goes beside it as .md "
        "(default: %(default)s)",
    )
    args = parser.parse_args()
    if args.cases < 1 or args.jobs < 1:
        raise ValueError("--cases and --jobs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="nfdp_fuzz_") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        seeds = make_seeds(folder)
        rng = random.Random(args.seed)
        cases = [make_case(i, seeds, folder, rng) for i in range(args.cases)]
        if not args.no_extremes:
            cases += make_extremes(len(cases), folder)
        base = baseline_mb()
        start = time.perf_counter()
        cases = run_cases(cases, args.jobs, args.timeout, args.memory_mb)
        wall = time.perf_counter() - start
    report(args, seeds, cases, base, wall)


def report(
    args: argparse.Namespace, seeds: list[Path], cases: list[Case], base: float, wall: float
) -> None:
    """Print the Markdown report and write it with the JSON."""
    from common import markdown_table, provenance, publish  # imports torch: after the children

    counts = Counter(c.outcome for c in cases)
    peak = max(c.peak_mb for c in cases)
    biggest = max(c.size for c in cases) / 1e6
    bad = [c for c in cases if c.outcome in ("unexpected exception", "crashed", "hung")]
    oom = [c for c in cases if c.outcome == "refused: out of memory"]
    targets = [
        ("no unexpected exception types", counts["unexpected exception"] == 0),
        ("no hangs", counts["hung"] == 0),
        ("no crashes", counts["crashed"] == 0),
        (f"peak memory under {PEAK_TARGET_MB:.0f} MB", peak < PEAK_TARGET_MB),
        ("no refusals caused by running out of memory", not oom),
    ]
    extremes = [c for c in cases if c.mutation == "largest legal"]
    if extremes:
        targets.append(("largest legal inputs read", all(c.outcome == "read" for c in extremes)))
    by_mutation = [
        [kind, *(sum(c.mutation == kind and c.outcome == o for c in cases) for o in OUTCOMES)]
        for kind in KINDS
    ]
    headers = ["case", "seed", "mutation", "MB", "outcome", "s", "peak MB", "error"]
    worst_memory = sorted(cases, key=lambda c: -c.peak_mb)[: args.worst]
    worst_time = sorted(cases, key=lambda c: -c.seconds)[: args.worst]
    causes = Counter(c.cause_type or "-" for c in cases if c.outcome.startswith("refused"))
    body = "\n\n".join(
        [
            f"{len(cases) - len(extremes)} mutated files from {len(seeds)} real seeds "
            f"({', '.join(s.name for s in seeds)}) and {len(extremes)} largest legal inputs; "
            f"largest input {biggest:.1f} MB. Each read "
            f"by `read_layer` in a forked child: {args.memory_mb} MiB address space, "
            f"{args.timeout:g} s; {args.jobs} at a time, {wall:.0f} s in all. Peak = child "
            f"ru_maxrss, including the {base:.0f} MB every child starts with.",
            markdown_table(
                ["outcome", "cases", "share", "median s", "max s", "max peak MB"],
                summary_rows(cases),
            ),
            "Targets: "
            + "; ".join(f"{name}: **{'met' if ok else 'MISSED'}**" for name, ok in targets),
            markdown_table(["mutation", *OUTCOMES], by_mutation),
            "Original exception types behind the refusals (the decoder error that the reader "
            "wrapped; `-` = refused by a check before decoding): "
            + ", ".join(f"{name} {n}" for name, n in causes.most_common()),
            "Unexpected exceptions, crashes and hangs:\n\n"
            + (markdown_table(headers, case_rows(bad)) if bad else "none"),
            "Highest peak memory:\n\n" + markdown_table(headers, case_rows(worst_memory)),
            "Slowest:\n\n" + markdown_table(headers, case_rows(worst_time)),
        ]
    )
    settings = {
        "cases": args.cases,
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "memory_mb": args.memory_mb,
        "baseline_mb": base,
        "seeds": [s.name for s in seeds],
    }
    results = {
        "counts": dict(counts),
        "targets": {name: ok for name, ok in targets},
        "cases": [asdict(c) for c in cases],
    }
    publish(args.json, "Reader fuzzing", provenance(), settings, body, results)


if __name__ == "__main__":
    # benchmarks/common.py imports torch: it is imported only to report, after the children
    # ran, so that they start small.
    try:
        main()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
