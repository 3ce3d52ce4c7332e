"""NFDP training: flow prior, losses, datasets, augmentation, fit / fine-tune / evaluate.

Imports torch and numpy only (never napari). Public functions are imported lazily, so
``import training`` and ``training.events`` (progress events, the fine-tune result) stay
free of torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "fit": "training.fit",
    "finetune": "training.finetune",
    "finetune_and_publish": "training.finetune",
    "FinetuneResult": "training.events",
    "evaluate": "training.evaluate",
    "train": "training.loop",
    "TrainConfig": "training.loop",
    "TrainingCancelled": "training.loop",
}

__all__ = [
    "FinetuneResult",
    "TrainConfig",
    "TrainingCancelled",
    "evaluate",
    "finetune",
    "finetune_and_publish",
    "fit",
    "train",
]

if TYPE_CHECKING:
    from training.evaluate import evaluate
    from training.events import FinetuneResult
    from training.finetune import finetune, finetune_and_publish
    from training.fit import fit
    from training.loop import TrainConfig, TrainingCancelled, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
