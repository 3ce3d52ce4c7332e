"""DistributedDataParallel smoke run: two CPU processes on gloo under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch.distributed as dist

from training.__main__ import main as training_main

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_two_process_ddp_keeps_replicas_in_sync(tmp_path):
    cmd = [*TORCHRUN, str(REPO / "tests" / "training" / "ddp_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in results)
    # Each rank saw different images; only synchronised gradients keep the weights equal.
    assert all(r["max_param_diff"] == 0.0 for r in results)
    assert (tmp_path / "best.pt").exists() and (tmp_path / "log.jsonl").exists()


def test_fit_under_torchrun_prints_its_results_once(tmp_path):
    data, run = tmp_path / "synth", tmp_path / "run"
    assert training_main(["synth", "--n", "4", "--out", str(data), "--ext", "png"]) == 0
    tiny = ["--input-size", "64", "32", "--max-side", "256", "--batch-size", "1"]
    fit = ["-m", "training", "fit", "--data", str(data), "--out", str(run), "--epochs", "1"]
    cmd = [*TORCHRUN, *fit, *tiny, "--device", "cpu", "--no-augment"]
    done = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best checkpoint:") == 1, done.stdout
    assert done.stdout.count("epoch    1/1") == 1 and done.stdout.count("run ") == 1
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


def test_the_command_line_leaves_the_process_group_also_after_an_error(tmp_path, capsys):
    for argv, status in (
        (["synth", "--n", "1", "--out", str(tmp_path / "synth")], 0),
        (["fit", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")], 2),
    ):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        assert training_main(argv) == status
        assert not dist.is_initialized()
    assert "error:" in capsys.readouterr().err
