"""NFDP training: flow prior, losses, datasets, augmentation, fit / fine-tune / evaluate.

Imports torch and numpy only (never napari). Public functions are imported lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "fit": "training.fit",
    "finetune": "training.finetune",
    "evaluate": "training.evaluate",
    "train": "training.loop",
    "TrainConfig": "training.loop",
    "TrainingCancelled": "training.loop",
}

__all__ = ["TrainConfig", "TrainingCancelled", "evaluate", "finetune", "fit", "train"]

if TYPE_CHECKING:
    from training.evaluate import evaluate
    from training.finetune import finetune
    from training.fit import fit
    from training.loop import TrainConfig, TrainingCancelled, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
