"""Fine-tuning's litter and failure messages: stale run folders, a model file that cannot be
written (real failing writes: /dev/full, a file size limit in a real process)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from napari_nfdp.core.registry import ModelRegistry
from tests.ui.conftest import write_corrections, write_spine_folder
from training import finetune as finetune_module
from training.finetune import (
    RUN_OWNER_FILE,
    finetune_and_publish,
    remove_stale_run_folders,
    write_failure_message,
)

REPO = Path(__file__).resolve().parents[2]
DAY = 86400.0
DEV_FULL = Path("/dev/full")


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The system temp folder for this test (where run folders are made and looked for)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _dead_pid() -> int:
    """The id of a real process that has finished."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _run_folder(parent: Path, name: str, *, age: float, owner: int | None) -> Path:
    """A run folder with a file in it, everything last changed ``age`` seconds ago."""
    folder = parent / name
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"x" * 1000)
    if owner is not None:
        (folder / RUN_OWNER_FILE).write_text(f"{owner}\n")
    when = time.time() - age
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (when, when))
    return folder


def test_stale_run_folders_of_gone_processes_are_removed(tmp_path):
    dead = _dead_pid()
    gone = _run_folder(tmp_path, "nfdp-finetune-gone", age=2 * DAY, owner=dead)
    unowned = _run_folder(tmp_path, "nfdp-finetune-old", age=2 * DAY, owner=None)
    running = _run_folder(tmp_path, "nfdp-finetune-running", age=2 * DAY, owner=os.getpid())
    recent = _run_folder(tmp_path, "nfdp-finetune-recent", age=3600, owner=dead)
    other = _run_folder(tmp_path, "someone-else", age=2 * DAY, owner=dead)
    touched = _run_folder(tmp_path, "nfdp-finetune-touched", age=2 * DAY, owner=dead)
    (touched / "log.jsonl").write_text("{}\n")  # written a moment ago: still in use
    file = tmp_path / "nfdp-finetune-file"
    file.write_text("not a folder")
    os.utime(file, (time.time() - 2 * DAY,) * 2)

    assert remove_stale_run_folders(tmp_path) == 2
    assert not gone.exists() and not unowned.exists()
    assert all(p.exists() for p in (running, recent, other, touched, file))
    assert remove_stale_run_folders(tmp_path, older_than=60) == 1  # an hour old is enough now
    assert not recent.exists() and touched.exists()
    assert remove_stale_run_folders(tmp_path / "missing") == 0


def test_a_new_run_folder_names_its_process_and_is_kept_while_it_runs(scratch):
    run = finetune_module._new_run_folder()
    assert run.parent == scratch and run.name.startswith("nfdp-finetune-")
    assert int((run / RUN_OWNER_FILE).read_text()) == os.getpid()
    when = time.time() - 2 * DAY
    os.utime(run / RUN_OWNER_FILE, (when, when))
    os.utime(run, (when, when))
    assert remove_stale_run_folders() == 0 and run.is_dir()


def test_finetune_and_publish_clears_stale_run_folders_first(scratch, tmp_path):
    gone = _run_folder(scratch, "nfdp-finetune-crashed", age=2 * DAY, owner=_dead_pid())
    registry = ModelRegistry(tmp_path / "models")
    result = finetune_and_publish(registry, None, [], epochs=1, device="cpu")
    assert result.status == "failed" and "No corrected images" in result.message
    assert not gone.exists()


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_a_failed_write_of_the_model_file_is_explained():
    full = DEV_FULL.open("wb")  # buffered, as torch.save gets it from atomic_write
    try:
        with pytest.raises(RuntimeError) as torch_error:
            torch.save({"weights": torch.zeros(100_000)}, full)
    finally:
        with contextlib.suppress(OSError):  # closing flushes into the full device again
            full.close()
    assert "enforce fail" in str(torch_error.value)
    with pytest.raises(OSError) as os_error, DEV_FULL.open("wb", buffering=0) as full:
        full.write(b"x" * 1000)
    assert os_error.value.errno == errno.ENOSPC

    for error in (torch_error.value, os_error.value):
        assert write_failure_message(error, "/data/run") == (
            "Fine-tuning failed: could not write the model file (is the disk full?) — "
            "/data/run; the selected model is unchanged"
        )
    wrapped = RuntimeError("saving failed")
    wrapped.__cause__ = os_error.value
    assert write_failure_message(wrapped, "/data/run") is not None
    assert write_failure_message(ValueError("no space left"), "/data/run") is None
    assert write_failure_message(RuntimeError("out of memory"), "/data/run") is None
    with pytest.raises(RuntimeError, match="enforce fail") as no_memory:
        torch.empty(2**50, dtype=torch.uint8)  # torch's own "enforce fail", not a write
    assert write_failure_message(no_memory.value, "/data/run") is None


def test_reading_a_broken_checkpoint_is_not_a_failed_write(tmp_path):
    path = tmp_path / "truncated.pt"
    torch.save({"weights": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(RuntimeError) as error:
        torch.load(path, weights_only=True)
    assert write_failure_message(error.value, path) is None


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE write failure (Linux)")
def test_finetune_that_cannot_write_its_model_says_so(tmp_path, tiny_checkpoint):
    registry = ModelRegistry(tmp_path / "models")
    registry.add_file(tiny_checkpoint, note="tiny test model")
    before = registry.file.read_bytes()
    films, scratch = tmp_path / "films", tmp_path / "tmp"
    write_corrections(write_spine_folder(films, (300, 301)), (300, 301))
    scratch.mkdir()
    limit = 256 * 1024  # far below the model file's size
    assert tiny_checkpoint.stat().st_size > 4 * limit
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.training.finetune_worker", str(registry.root), str(films)]
        + [str(limit)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == "failed"
    assert result["message"].startswith(
        "Fine-tuning failed: could not write the model file (is the disk full?) — "
        f"{scratch}{os.sep}nfdp-finetune-"
    )
    assert result["message"].endswith("; the selected model is unchanged")
    assert "enforce fail" not in result["message"]
    assert registry.file.read_bytes() == before and registry.selected().id == "v1"
    assert not list(scratch.iterdir())  # the run folder was removed
