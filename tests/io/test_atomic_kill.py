"""kill -9 in the middle of sidecar saves: the file on disk is always a whole old or new one."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from napari_nfdp.core.atomic import remove_stale_temporaries
from napari_nfdp.io.annotations import read_annotation

WRITER = """
import sys, numpy as np
from napari_nfdp.io.annotations import Annotation, write_annotation
target = sys.argv[1]
names = tuple(f"P{i}" for i in range(2000))
variants = [np.full((2000, 2), float(v)) for v in (1, 2)]
print("ready", flush=True)
n = 0
while True:
    points = variants[n % 2]
    write_annotation(target, Annotation("film.png", (4000, 3000), names, points, ["human"] * 2000))
    n += 1
"""


def test_kill_9_during_saves_never_leaves_a_torn_sidecar(tmp_path):
    target = tmp_path / "film.png.nfdp.json"
    rng = random.Random(0)
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.4))  # somewhere inside a write, or between two
        child.send_signal(signal.SIGKILL)
        child.wait()
        if target.exists():
            saved = read_annotation(target)  # complete and valid: the old or the new file
            assert np.unique(saved.points).tolist() in ([1.0], [2.0])
    assert target.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert remove_stale_temporaries(tmp_path, older_than=0) == len(leftovers)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
