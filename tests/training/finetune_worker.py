"""Run by test_finetune_reliability.py as a separate process: fine-tune under a file size limit.

``python -m tests.training.finetune_worker REGISTRY FILMS LIMIT`` sets RLIMIT_FSIZE to LIMIT bytes
(so writing the model file really fails, as on a full disk: the kernel refuses the write), runs
``finetune_and_publish`` on the films' corrections and prints the result as JSON.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

from napari_nfdp.core.registry import ModelRegistry
from training.finetune import finetune_and_publish


def main(root: Path, films: Path, limit: int) -> None:
    """Fine-tune the registry's selected model on ``films`` with writes capped at ``limit``."""
    registry = ModelRegistry(root)
    images = sorted(films.glob("*.png"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    result = finetune_and_publish(registry, None, images, epochs=1, device="cpu")
    sys.stdout.write(json.dumps({"status": result.status, "message": result.message}) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
