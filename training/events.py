"""Progress events of training and fine-tuning, and the result of a fine-tune.

Plain frozen dataclasses that import neither torch nor napari, so a GUI can dispatch on them
cheaply. :func:`training.loop.train` emits :class:`Started`, :class:`Step` and
:class:`EpochDone`; :func:`training.finetune.finetune` adds :class:`Baseline` and
:class:`Done`; :func:`training.finetune.finetune_and_publish` adds :class:`Loading` while it
reads the corrected images. Errors in percent are percent of the image height.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from napari_nfdp.core.registry import ModelVersion


@dataclass(frozen=True)
class Loading:
    """Reading corrected image ``index`` of ``total`` (1-based)."""

    index: int
    total: int


@dataclass(frozen=True)
class Baseline:
    """Validation MRE of the base model before fine-tuning, on ``holdout_images`` images
    (0: too few images to hold any out, measured on the training images)."""

    val_mre_pct: float
    holdout_images: int


@dataclass(frozen=True)
class Started:
    """A training run began: ``epochs`` epochs of ``steps_per_epoch`` optimisation steps, of
    ``stage`` 1 (the whole-film network) or 2 (the per-vertebra refiner)."""

    run_id: str
    epochs: int
    steps_per_epoch: int
    stage: int = 1


@dataclass(frozen=True)
class Step:
    """One optimisation step done (``epoch`` and ``step`` are 1-based)."""

    epoch: int
    step: int
    loss: float


@dataclass(frozen=True)
class EpochDone:
    """An epoch finished and was validated; ``best`` when it is the best so far."""

    epoch: int
    epochs: int
    loss: float
    val_mre_pct: float
    lr: float = 0.0
    seconds: float = 0.0
    best: bool = False


@dataclass(frozen=True)
class Done:
    """Fine-tuning finished: validation MRE before and after, on the same images."""

    val_mre_pct_before: float
    val_mre_pct_after: float


ProgressEvent = Loading | Baseline | Started | Step | EpochDone | Done
ProgressFn = Callable[[ProgressEvent], None]
StopFn = Callable[[], bool]

FINETUNE_STATUSES: tuple[str, ...] = ("published", "kept", "cancelled", "failed")


@dataclass(frozen=True)
class FinetuneResult:
    """How a fine-tune ended.

    ``status`` is "published" (a new registry version, ``version``), "kept" (nothing published:
    validation got worse, or publishing was not asked for), "cancelled" or "failed";
    ``message`` says why in a sentence. ``checkpoint`` is the candidate when it was written to
    a run folder the caller keeps; ``notes`` name the skipped files.
    """

    status: str
    message: str
    version: ModelVersion | None = None
    metrics: dict = field(default_factory=dict)
    n_images: int = 0
    checkpoint: Path | None = None
    notes: tuple[str, ...] = ()
