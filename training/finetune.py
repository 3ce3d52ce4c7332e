"""Few-image refit of a trained model on a user's corrected annotations.

:func:`finetune` refits a checkpoint on images and landmarks. :func:`finetune_and_publish` is
the one path of the dock widget's button and ``python -m training finetune``: it keeps only
human-corrected sidecars (:mod:`napari_nfdp.io.corrections`), fine-tunes the base model in a
run folder and publishes the candidate into the model registry when validation did not get
worse.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_nfdp.core.checkpoint import (
    DEFAULT_MODEL_PATH,
    Checkpoint,
    load_checkpoint,
    update_metrics,
)
from napari_nfdp.core.localizer import Localizer, resolve_device
from napari_nfdp.core.messages import describe_error
from napari_nfdp.core.refine import RefinerConfig
from napari_nfdp.core.registry import ModelRegistry, ModelVersion, RegistryError
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.corrections import find_corrections, read_corrections
from training.datasets import Sample, sample_from_array
from training.events import Baseline, Done, FinetuneResult, Loading
from training.fit import DEFAULT_MAX_SIDE, split_validation
from training.loop import ProgressFn, StopFn, TrainConfig, TrainingCancelled, train, validate
from training.refine import Jitter, mre_pct, train_refiner

__all__ = [
    "FinetuneResult",
    "finetune",
    "finetune_and_publish",
    "remove_stale_run_folders",
    "resolve_base",
    "write_failure_message",
]

logger = logging.getLogger(__name__)

FINETUNE_STEPS = 60  # default optimisation steps when ``epochs`` is not given
FINETUNE_LR = 2e-5  # with the BatchNorm statistics kept (benchmarks/finetune_gain.py)
RUN_PREFIX = "nfdp-finetune-"  # temporary run folders: <system temp>/nfdp-finetune-<random>
RUN_OWNER_FILE = "owner.pid"  # in a temporary run folder: the id of the process using it
STALE_RUN_SECONDS = 86400.0  # a run folder unchanged this long whose process is gone is litter
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_WRITE_FAILURE_TEXTS = ("no space left", "disk quota", "file too large", "file write failed")


def _replay_samples(n: int, seed: int) -> list[Sample]:
    from napari_nfdp.simulator import synthesize_spine

    return [
        sample_from_array(c.image, c.landmarks, f"replay-{c.seed}", DEFAULT_MAX_SIDE)
        for c in (synthesize_spine(seed + 10_000 + i) for i in range(n))
    ]


REFIT_EPOCHS = 8
REFIT_LR = 3e-4


def two_stage_mre(checkpoint: Checkpoint, samples: Sequence[Sample], device: str | None) -> float:
    """MRE (% of height) of both stages of ``checkpoint`` on ``samples``."""
    localizer = Localizer(checkpoint, resolve_device(device))
    return mre_pct(samples, [localizer.predict(s.image).landmarks for s in samples])


def refit_stage2(
    base: Checkpoint,
    stage1: Path,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    seed: int,
    device: str | None,
    should_stop: StopFn | None,
    progress: ProgressFn | None = None,
) -> Path:
    """Refit ``base``'s stage 2 on the corrected corners on top of the refitted stage 1 (the
    checkpoint ``stage1``, which the two-stage checkpoint then replaces; its path is returned).
    The run's log is ``stage2/log.jsonl`` beside it."""
    jitter = (base.training.get("refiner") or {}).get("jitter")
    both = train_refiner(
        load_checkpoint(stage1),
        train_samples,
        val_samples,
        stage1.parent / "stage2",
        epochs=REFIT_EPOCHS,
        batch_size=32,
        lr=REFIT_LR,
        seed=seed,
        device=device,
        init=base.refiner,
        jitter=Jitter(**jitter) if jitter else None,
        should_stop=should_stop,
        progress=progress,
    )
    os.replace(both, stage1)
    return stage1


def finetune(
    base_checkpoint: str | Path | None,
    images: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    out: str | Path,
    epochs: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    *,
    replay: int = 0,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    device: str | None = None,
) -> Path:
    """Refit backbone and flow of ``base_checkpoint`` on corrected images; return the checkpoint.
    A two-stage model's stage 2 is refitted too, on top of the new stage 1, and its
    before / after MRE are those of both stages.

    ``landmarks`` are (K, 2) (row, col) arrays, NaN where a point is missing. Some images are
    held out (when there are at least three) to measure validation MRE before and after;
    both are reported through ``progress`` and stored in the checkpoint's metrics
    (``val_mre_pct_before`` / ``val_mre_pct_after``, percent of image height) so the caller
    can publish only an improvement. ``replay`` synthetic spine cases are mixed in against
    forgetting. ``should_stop`` is polled between steps; stopping raises
    ``TrainingCancelled`` and writes no checkpoint.
    """
    if len(images) != len(landmarks):
        raise ValueError(f"{len(images)} images but {len(landmarks)} landmark sets")
    if not images:
        raise ValueError("fine-tuning needs at least one corrected image")
    base = load_checkpoint(base_checkpoint or DEFAULT_MODEL_PATH)
    k = base.config.num_landmarks
    # films are kept at stage 2's working size when there is one (the same 1024 px by default)
    stage2 = RefinerConfig.from_dict(base.refiner["config"]) if base.refiner else None
    max_side = stage2.max_side if stage2 else DEFAULT_MAX_SIDE
    samples = []
    for i, (image, points) in enumerate(zip(images, landmarks, strict=True)):
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (k, 2):
            raise ValueError(f"image {i}: expected ({k}, 2) landmarks, got {points.shape}")
        if not np.isfinite(points).all(axis=1).any():
            raise ValueError(f"image {i} has no visible landmarks")
        samples.append(sample_from_array(image, points, f"image-{i}", max_side))

    train_idx, val_idx = split_validation(
        list(range(len(samples))), holdout_fraction if len(samples) >= 3 else 0.0, seed
    )
    train_samples = [samples[i] for i in train_idx]
    val_samples = [samples[i] for i in val_idx] or train_samples
    if replay and base.landmark_names == SPINE_LANDMARK_NAMES:
        train_samples = train_samples + _replay_samples(replay, seed)

    cfg = TrainConfig.from_dict(base.training.get("config", {})) if base.training else TrainConfig()
    cfg.variant = base.config.variant
    cfg.input_size = tuple(base.config.input_size)
    cfg.fit_fraction = base.config.fit_fraction
    cfg.pyramid_fusion = base.config.pyramid_fusion
    cfg.batch_size = min(8, len(train_samples))
    cfg.lr = FINETUNE_LR
    cfg.freeze_batchnorm = True  # a few films cannot re-estimate the normalisation
    cfg.num_workers = 0  # the base's own training may have used a machine's many cores
    cfg.device = device
    cfg.seed = seed
    cfg.amp = True
    steps_per_epoch = math.ceil(len(train_samples) / cfg.batch_size)
    cfg.epochs = epochs or max(3, math.ceil(FINETUNE_STEPS / steps_per_epoch))

    net = base.build_model().to(resolve_device(device))
    before = validate(net, val_samples, base.config, next(net.parameters()).device).mre_pct
    if base.refiner is not None:  # what the person sees is the two-stage result
        before = two_stage_mre(base, val_samples, device)
    if progress is not None:
        progress(Baseline(val_mre_pct=before, holdout_images=len(val_idx)))
    best = train(
        cfg,
        train_samples,
        val_samples,
        out,
        landmark_names=base.landmark_names,
        init=(base.model_state, base.flow_state),
        keep_resume_state=False,
        data_summary={
            "base_checkpoint": str(base_checkpoint or "bundled default"),
            "corrected_images": len(samples),
            "holdout_images": len(val_idx),
            "replay_images": replay,
        },
        progress=progress,
        should_stop=should_stop,
    )
    if base.refiner is not None:
        best = refit_stage2(
            base, best, train_samples, val_samples, seed, device, should_stop, progress
        )
    after = float(load_checkpoint(best).metrics.get("val_mre_pct", float("nan")))
    update_metrics(
        best,
        {
            "val_mre_pct_before": before,
            "val_mre_pct_after": after,
            "holdout_images": len(val_idx),
            "corrected_images": len(samples),
        },
    )
    if progress is not None:
        progress(Done(val_mre_pct_before=before, val_mre_pct_after=after))
    return best


def _new_run_folder() -> Path:
    """A temporary run folder (``RUN_PREFIX``) that names this process in ``RUN_OWNER_FILE``."""
    run = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
    try:
        (run / RUN_OWNER_FILE).write_text(f"{os.getpid()}\n", encoding="ascii")
    except OSError:
        shutil.rmtree(run, ignore_errors=True)
        raise
    return run


def _owner_alive(run: Path) -> bool:
    """Whether the process named in a run folder's owner file may still be running.

    No (readable) owner file, or no way to ask (not POSIX): False, so age alone decides.
    """
    try:
        pid = int((run / RUN_OWNER_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, but another user's
        return True
    return True


def _last_change(folder: Path) -> float:
    """The newest mtime of ``folder`` and everything in it (symlinks not followed)."""
    newest = folder.lstat().st_mtime
    for parent, names, files in os.walk(folder):
        for name in (*names, *files):
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
    return newest


def remove_stale_run_folders(
    folder: str | Path | None = None, older_than: float = STALE_RUN_SECONDS
) -> int:
    """Delete fine-tune run folders left behind by crashed processes; return how many.

    Looks in ``folder`` (default: the system temp folder) for ``nfdp-finetune-*`` folders of
    this user in which nothing changed for ``older_than`` seconds and whose owning process
    (``owner.pid``, written when the folder was made) is gone; folders without an owner file
    are judged by age alone. Errors are logged, not raised.
    """
    folder = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    limit = time.time() - older_than
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(RUN_PREFIX)]
    except OSError:
        return 0
    removed = 0
    for run in candidates:
        try:
            info = run.lstat()
            if not run.is_dir() or run.is_symlink():
                continue
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                continue
            if _last_change(run) >= limit or _owner_alive(run):
                continue
            shutil.rmtree(run)
            removed += 1
        except OSError as error:
            logger.warning("could not remove the stale fine-tune run folder %s: %s", run, error)
    if removed:
        logger.info("removed %d stale fine-tune run folder(s) in %s", removed, folder)
    return removed


def _is_write_failure(error: BaseException) -> bool:
    """Whether an error (or one it was raised from) says a file could not be written."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if isinstance(current, OSError) and current.errno in _WRITE_ERRNOS:
            return True
        if isinstance(current, OSError | RuntimeError) and (
            any(t in text for t in _WRITE_FAILURE_TEXTS)
            or ("enforce fail at inline_container" in text and "reader" not in text)
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def write_failure_message(error: BaseException, path: str | Path) -> str | None:
    """The message of a fine-tune that failed writing a model file to ``path``, or None when
    ``error`` is not a failed write (full disk, quota, file size limit, or torch's checkpoint
    writer failing: ``[enforce fail at inline_container.cc...]``).
    """
    if not _is_write_failure(error):
        return None
    return (
        "Fine-tuning failed: could not write the model file (is the disk full?) — "
        f"{path}; the selected model is unchanged"
    )


class _ModelWriteFailed(Exception):
    """A model file could not be written to ``path`` (carried up to the failure message)."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(f"could not write the model file in {path}: {error}")
        self.path = path
        self.error = error


def _plural(n: int, word: str = "image") -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def resolve_base(
    registry: ModelRegistry, base: ModelVersion | str | Path | None
) -> tuple[Path, ModelVersion | None]:
    """The checkpoint to start from and its registry version (None for an outside file).

    ``base`` is a :class:`ModelVersion`, a registry version id ("v3", "bundled"), a checkpoint
    file (a registry version when it is one of the registry's files), or None for the
    registry's selected version. Raises ValueError when it is none of these.
    """
    if base is None:
        version = registry.selected()
        return version.path, version
    if isinstance(base, ModelVersion):
        version = registry.verify(base)
        return version.path, version
    if isinstance(base, str):
        with contextlib.suppress(KeyError):
            version = registry.get(base)
            return version.path, version
    path = Path(base).expanduser()
    if not path.is_file():
        known = ", ".join(v.id for v in registry.versions())
        raise ValueError(
            f"{base}: neither a model version of the registry {registry.root} "
            f"(known: {known}) nor a checkpoint file"
        )
    matches: list[ModelVersion] = []
    with contextlib.suppress(RegistryError):  # an outside file needs no readable registry
        matches = [v for v in registry.versions() if v.path.resolve() == path.resolve()]
    if matches:
        version = registry.verify(matches[0])  # a file the registry holds is checked too
        return version.path, version
    return path, None


def finetune_and_publish(
    registry: ModelRegistry,
    base: ModelVersion | str | Path | None,
    images: Sequence[str | Path],
    annotation_folder: str | Path | None = None,
    *,
    epochs: int | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    publish: bool = True,
    out: str | Path | None = None,
    replay: int = 0,
    seed: int = 0,
) -> FinetuneResult:
    """Fine-tune ``base`` on the human corrections among ``images`` and publish the result.

    Sidecars are looked up in ``annotation_folder`` first, then next to each image; only those
    :func:`~napari_nfdp.io.corrections.find_corrections` accepts are used. ``base`` is resolved
    by :func:`resolve_base` (None: the registry's selected version). Training runs in ``out``
    (kept, the candidate is ``out/best.pt``) or in a temporary folder that is removed. With
    ``publish`` the candidate goes through :meth:`ModelRegistry.publish` (kept only if
    validation did not get worse); without it the registry is not changed. ``progress``
    receives :mod:`training.events` (``Loading`` while images are read); ``should_stop`` is
    polled between image reads and optimisation steps. Never raises for a failed fine-tune:
    the result's status says "failed" and the traceback is logged (a failed model write says
    so: :func:`write_failure_message`). ValueError when neither ``publish`` nor ``out`` would
    keep the candidate. Stale temporary run folders of crashed runs are removed first
    (:func:`remove_stale_run_folders`).
    """
    if not publish and out is None:
        raise ValueError("without publishing, the candidate needs a run folder (out) to stay in")
    with contextlib.suppress(OSError):  # e.g. no usable temp folder: the run says so later
        remove_stale_run_folders()
    base_id = getattr(base, "id", None) or str(base or "the selected model")
    try:
        return _finetune_and_publish(
            registry,
            base,
            images,
            annotation_folder,
            epochs=epochs,
            device=device,
            progress=progress,
            should_stop=should_stop,
            publish=publish,
            out=out,
            replay=replay,
            seed=seed,
        )
    except TrainingCancelled:
        kept = f"; kept {base_id}" if publish else ""
        return FinetuneResult("cancelled", f"Fine-tuning cancelled{kept}.")
    except Exception as error:  # noqa: BLE001 - a failed fine-tune is a result, not a crash
        logger.exception("fine-tuning %s failed", base_id)
        if isinstance(error, _ModelWriteFailed):
            message = write_failure_message(error.error, error.path)
            if message is not None:
                return FinetuneResult("failed", message)
        return FinetuneResult("failed", f"Fine-tuning failed: {describe_error(error)}")


def _finetune_and_publish(
    registry: ModelRegistry,
    base: ModelVersion | str | Path | None,
    images: Sequence[str | Path],
    annotation_folder: str | Path | None,
    *,
    epochs: int | None,
    device: str | None,
    progress: ProgressFn | None,
    should_stop: StopFn | None,
    publish: bool,
    out: str | Path | None,
    replay: int,
    seed: int,
) -> FinetuneResult:
    stop = should_stop or (lambda: False)
    base_path, version = resolve_base(registry, base)
    if publish and version is None:
        return FinetuneResult(
            "failed",
            f"{base_path.name} is not a model version of the registry {registry.root}, so a "
            "model fine-tuned from it cannot be published there: add it to the registry first, "
            "or fine-tune without publishing.",
        )
    names = load_checkpoint(base_path).landmark_names
    corrections, notes = find_corrections(images, annotation_folder, names)

    def loading(index: int, total: int) -> None:
        if progress is not None:
            progress(Loading(index=index, total=total))

    data = read_corrections(corrections, progress=loading, should_stop=stop)
    notes += data.notes
    if data.cancelled:
        raise TrainingCancelled("stopped while reading the corrected images")
    if not data.images:
        hint = f" ({'; '.join(notes)})" if notes else ""
        n_seen = len(set(map(Path, images)))
        return FinetuneResult(
            "failed",
            f"No corrected images to learn from among {_plural(n_seen)}: only annotations "
            "with points a person placed or moved count (drag wrong points into place; they "
            f"are saved automatically), then fine-tune.{hint}",
            notes=tuple(notes),
        )
    n_images = len(data.images)
    try:
        run = Path(out) if out is not None else _new_run_folder()
    except OSError as error:
        if _is_write_failure(error):
            raise _ModelWriteFailed(Path(tempfile.gettempdir()), error) from error
        raise
    writing = run  # where a model file is being written, for a failed write's message
    try:
        candidate = finetune(
            base_path,
            data.images,
            data.landmarks,
            run,
            epochs=epochs,
            progress=progress,
            should_stop=should_stop,
            replay=replay,
            seed=seed,
            device=device,
        )
        if stop():
            raise TrainingCancelled("stopped after the last step")
        metrics = dict(load_checkpoint(candidate).metrics)
        if publish and version is not None:
            writing = registry.versions_dir
            published, reason = registry.publish(
                candidate, parent=version.id, n_images=n_images, metrics=metrics
            )
        else:
            published = None
            before = float(metrics.get("val_mre_pct_before", math.nan))
            after = float(metrics.get("val_mre_pct_after", math.nan))
            reason = (
                f"wrote {candidate} (validation MRE {before:.2f} % -> {after:.2f} %); "
                "not published, the model registry is unchanged"
            )
    except (OSError, RuntimeError) as error:
        if _is_write_failure(error):
            raise _ModelWriteFailed(writing, error) from error
        raise
    finally:
        if out is None:
            shutil.rmtree(run, ignore_errors=True)
    status = "published" if published is not None else "kept"
    message = f"Fine-tuned on {_plural(n_images)}: {reason}."
    if notes:
        message += " (" + "; ".join(notes) + ")"
    if published is not None:
        logger.info("published %s: %s fine-tuned on %s", published.id, base_path, _plural(n_images))
    return FinetuneResult(
        status,
        message,
        published,
        metrics,
        n_images,
        checkpoint=candidate if out is not None else None,
        notes=tuple(notes),
    )
