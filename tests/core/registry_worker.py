"""Run by test_registry.py as a separate process: add checkpoints to a shared model registry.

``python -m tests.core.registry_worker ROOT SCRATCH WORKER COUNT GO`` waits until the file GO
exists (so that all workers start together), then ``COUNT`` times writes a checkpoint whose
metrics name this worker and item, adds it with ``add_file`` and prints the acknowledged
version as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from napari_nfdp.core.checkpoint import save_checkpoint
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.registry import ModelRegistry
from napari_nfdp.core.schema import generic_landmark_names

K = 4


def main(root: Path, scratch: Path, worker: int, count: int, go: Path) -> None:
    """Add ``count`` checkpoints of this worker to the registry at ``root``."""
    torch.manual_seed(worker)
    model = LandmarkNet(ModelConfig("regression", K, (64, 32)))
    registry = ModelRegistry(root)
    source = scratch / f"worker{worker}.pt"
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for item in range(count):
        save_checkpoint(
            source,
            model,
            landmark_names=generic_landmark_names(K),
            metrics={"worker": worker, "item": item, "corrected_images": item + 1},
            half=True,
        )
        version = registry.add_file(source, note=f"w{worker}-{item}")
        ack = {"id": version.id, "worker": worker, "item": item, "sha256": version.sha256}
        sys.stdout.write(json.dumps(ack) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(
        Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    )
