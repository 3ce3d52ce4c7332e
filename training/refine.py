"""Training stage 2 (``python -m training refine``): the per-vertebra corner refiner.

Patches are cut around the true vertebrae with their centre, angle and size jittered as much
as stage 1 really errs (measured on the validation films, so stage 2 learns to correct stage
1's mistakes), with the photometric augmentation of stage 1. The loss is NFDP's residual
log-likelihood with stage 2's own flow prior. Each epoch, the validation films go through the
whole two-stage path (stage 1 predictions computed once) and the checkpoint with the lowest
MRE is kept: the stage-1 checkpoint with the refiner added.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from napari_nfdp.core.checkpoint import Checkpoint, refiner_part, save_checkpoint
from napari_nfdp.core.localizer import (
    REFINED_SIGMA_KEY,
    Localizer,
    Prediction,
    on_film,
    resolve_device,
    vertebra_height,
)
from napari_nfdp.core.preprocess import apply_affine, normalise_intensity
from napari_nfdp.core.refine import (
    CORNERS,
    RefineNet,
    Refiner,
    RefinerConfig,
    cut_patches,
    patch_matrices,
    refinable,
    standardise,
    vertebra_frames,
)
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from training.augment import AugmentConfig, photometric
from training.datasets import Sample
from training.events import EpochDone, ProgressFn, Started, Step, StopFn
from training.flow import RealNVP
from training.loop import TrainingCancelled, freeze_batchnorm
from training.losses import make_loss
from training.metrics import radial_errors

log = logging.getLogger(__name__)

# stage 1's intensity changes; blur up to 2 patch pixels (a vertebra spans about 30)
PATCH_AUGMENT = AugmentConfig(blur_sigma_max=2.0)


@dataclass(frozen=True)
class Jitter:
    """Standard deviations of the patch frame's errors: centre (per axis, in vertebra sizes),
    angle (radians) and log size."""

    centre: float = 0.15
    angle: float = 0.06
    log_size: float = 0.08

    @classmethod
    def measured(
        cls,
        truth: Sequence[np.ndarray],
        found: Sequence[np.ndarray],
        shapes: Sequence[tuple[int, int]],
    ) -> Jitter:
        """Stage 1's frame errors on films of ``shapes`` with true and found (K, 2) corners, on
        the vertebrae stage 2 would refine (all four corners on the film in both), 1.5x for
        margin (the films' stage-1 errors are usually smaller than on films from elsewhere)."""
        centre, angle, size = [], [], []
        for true, guess, shape in zip(truth, found, shapes, strict=True):
            keep = refinable(on_film(true, shape) & on_film(guess, shape))
            if not keep.any():
                continue
            c0, a0, s0 = vertebra_frames(true.reshape(-1, CORNERS, 2)[keep])
            c1, a1, s1 = vertebra_frames(guess.reshape(-1, CORNERS, 2)[keep])
            centre.append(((c1 - c0) / s0[:, None]).ravel())
            angle.append(np.angle(np.exp(1j * (a1 - a0))))
            size.append(np.log(s1 / s0))
        if not centre:
            return cls()
        rms = [float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for v in (centre, angle, size)]
        return cls(*(1.5 * value for value in rms))


class VertebraPatches(Dataset):
    """One item per vertebra with four known corners on its film: (patch (1, P, P), target
    corners (4, 2) in normalised patch units, all-ones visibility (4,)), jittered per epoch."""

    def __init__(
        self,
        samples: Sequence[Sample],
        config: RefinerConfig,
        jitter: Jitter,
        aug: AugmentConfig,
        seed: int,
    ) -> None:
        self.images = [torch.from_numpy(normalise_intensity(s.image)) for s in samples]
        self.corners = [s.landmarks.reshape(-1, CORNERS, 2) for s in samples]
        self.items = [
            (i, v)
            for i, sample in enumerate(samples)
            for v in np.flatnonzero(refinable(on_film(sample.landmarks, sample.image.shape)))
        ]
        self.config, self.jitter, self.aug, self.seed = config, jitter, aug, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        film, vertebra = self.items[index]
        corners = self.corners[film][vertebra]
        centre, angle, size = vertebra_frames(corners[None])
        centre = centre + rng.normal(0.0, self.jitter.centre, 2) * size
        angle = angle + rng.normal(0.0, self.jitter.angle)
        size = size * math.exp(rng.normal(0.0, self.jitter.log_size))
        matrix = patch_matrices(centre, angle, size, self.config)
        patch = cut_patches(self.images[film], matrix, self.config.patch_size)[0, 0].numpy()
        patch = photometric(patch, rng, self.aug, 1.0)
        target = apply_affine(np.linalg.inv(matrix[0]), corners) / self.config.patch_size - 0.5
        return (
            standardise(torch.from_numpy(patch)[None, None])[0],
            torch.from_numpy(target.astype(np.float32)),
            torch.ones(CORNERS),
        )


def refined_sigma_vertebrae(
    found: Sequence[np.ndarray], sigma: Sequence[np.ndarray], visible: Sequence[np.ndarray]
) -> float:
    """Median final sigma (mean of the axes) of the refined points in vertebra heights of each
    film's found spine: the model's usual stage-2 sigma (``REFINED_SIGMA_KEY``)."""
    values = []
    for points, scale, seen in zip(found, sigma, visible, strict=True):
        height = vertebra_height(points, SPINE_LANDMARK_NAMES)
        chosen = np.repeat(refinable(seen), CORNERS)
        if height and chosen.any():
            values.append(scale[chosen].mean(axis=1) / height)
    return float(np.median(np.concatenate(values))) if values else math.nan


def two_stage_validation(
    refiner: Refiner, samples: Sequence[Sample], first: Sequence[Prediction]
) -> tuple[float, float]:
    """(MRE % of height, usual refined sigma in vertebra heights) of stage 2 applied to the
    stage-1 predictions ``first`` of ``samples``."""
    refined = [
        refiner(sample.image, p.landmarks, p.sigma, p.visible)
        for sample, p in zip(samples, first, strict=True)
    ]
    found = [points for points, _ in refined]
    sigma = refined_sigma_vertebrae(
        found, [scale for _, scale in refined], [p.visible for p in first]
    )
    return mre_pct(samples, found), sigma


def calibrate_two_stage(checkpoint: Checkpoint, samples: Sequence[Sample]) -> dict[str, float]:
    """Two-stage calibration metrics of ``checkpoint`` on held-out ``samples`` (CPU)."""
    localizer = Localizer(checkpoint, torch.device("cpu"))
    refiner, localizer.refiner = localizer.refiner, None
    if refiner is None:
        raise ValueError("the checkpoint has no stage 2")
    first = [localizer.predict(s.image) for s in samples]
    mre, sigma = two_stage_validation(refiner, samples, first)
    return {
        "calibration_mre_pct": mre,
        "stage1_calibration_mre_pct": mre_pct(samples, [p.landmarks for p in first]),
        REFINED_SIGMA_KEY: sigma,
    }


def mre_pct(samples: Sequence[Sample], found: Sequence[np.ndarray]) -> float:
    """Mean landmark error over the film height, percent, on every known landmark."""
    errors = [
        radial_errors(guess, sample.landmarks) / sample.image.shape[0] * 100
        for sample, guess in zip(samples, found, strict=True)
    ]
    return float(np.nanmean(np.concatenate(errors)))


def train_refiner(
    base: Checkpoint,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    out: str | Path,
    *,
    config: RefinerConfig | None = None,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 1e-3,
    workers: int = 0,
    seed: int = 0,
    device: str | None = None,
    init: dict | None = None,
    jitter: Jitter | None = None,
    should_stop: StopFn | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """Train a refiner on top of ``base`` (stage 1) and write ``out/best.pt`` (both stages),
    ``out/log.jsonl`` per epoch; return the best checkpoint's path.

    ``init`` (a checkpoint's refiner part) starts from a trained stage 2, whose config then
    applies, and is itself the first candidate for best (epoch 0): refitting never leaves a
    worse stage 2. ``jitter`` defaults to 1.5x stage 1's frame errors on ``val_samples``.
    ``should_stop`` is polled between steps; stopping raises ``TrainingCancelled``.
    ``progress`` receives ``Started`` (stage 2), ``Step`` and ``EpochDone`` events.
    """
    if base.landmark_names != SPINE_LANDMARK_NAMES:
        raise ValueError("stage 2 refines vertebrae: it needs a 68-landmark spine model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = RefinerConfig.from_dict(init["config"]) if init else config or RefinerConfig()
    torch.manual_seed(seed)
    where = resolve_device(device)
    stage1 = Localizer(base, where)
    stage1.refiner = None
    first = [stage1.predict(s.image) for s in val_samples]
    if jitter is None:
        jitter = Jitter.measured(
            [s.landmarks for s in val_samples],
            [p.landmarks for p in first],
            [s.image.shape for s in val_samples],
        )
    before = mre_pct(val_samples, [p.landmarks for p in first])
    log.info("stage 1 on %d validation films: MRE %.3f %%; jitter %s", len(first), before, jitter)

    data = VertebraPatches(train_samples, config, jitter, PATCH_AUGMENT, seed)
    net = RefineNet(config).to(where)
    flow = RealNVP().to(where)
    if init:
        net.load_state_dict(init["state"])
        if init.get("flow_state"):
            flow.load_state_dict(init["flow_state"])
    loss_fn = make_loss("nfdp", flow).to(where)
    optimizer = torch.optim.Adam([*net.parameters(), *flow.parameters()], lr=lr)
    steps = epochs * math.ceil(len(data) / batch_size)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.01, total_iters=steps)
    refiner = Refiner(config, net, where)
    best, best_path = math.inf, out / "best.pt"
    (out / "log.jsonl").unlink(missing_ok=True)

    def save(epoch: int, val: float, usual_sigma: float) -> None:
        save_checkpoint(
            best_path,
            stage1.model,
            landmark_names=base.landmark_names,
            flow_state=base.flow_state,
            training={
                **base.training,
                "refiner": {
                    "epoch": epoch,
                    "epochs": epochs,
                    "train_images": len(train_samples),
                    "val_images": len(val_samples),
                    "jitter": vars(jitter),
                    "lr": lr,
                    "batch_size": batch_size,
                    "seed": seed,
                    "init": bool(init),
                },
            },
            metrics={
                **base.metrics,
                "val_mre_pct": val,
                "stage1_val_mre_pct": before,
                # a refit measures on a few films: the calibrated value it started from stays
                REFINED_SIGMA_KEY: base.metrics.get(REFINED_SIGMA_KEY, usual_sigma)
                if init
                else usual_sigma,
            },
            refiner=refiner_part(net, config, flow.state_dict()),
        )

    if init:
        start, usual_sigma = two_stage_validation(refiner, val_samples, first)
        if math.isfinite(start):
            best = start
            save(0, best, usual_sigma)
        log.info("stage 2 as given: val MRE %.3f %%", best)
    emit = progress or (lambda event: None)
    emit(Started("stage2", epochs, math.ceil(len(data) / batch_size), stage=2))
    for epoch in range(epochs):
        t0 = time.perf_counter()
        data.epoch = epoch
        loader = DataLoader(
            data,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed * 1009 + epoch),
        )
        net.train()
        if init:  # a refit on a few films keeps the normalisation it was trained with
            freeze_batchnorm(net)
        losses = []
        for step, (patches, target, visible) in enumerate(loader):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"stage-2 training stopped at epoch {epoch + 1}, {step}")
            mu, sigma = net(patches.to(where))
            loss = loss_fn(mu, sigma, target.to(where), visible.to(where))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            emit(Step(epoch + 1, step + 1, losses[-1]))
        net.eval()
        val, usual_sigma = two_stage_validation(refiner, val_samples, first)
        improved = math.isfinite(val) and val < best
        lr_now = scheduler.get_last_lr()[0]
        record = {
            "epoch": epoch + 1,
            "epochs": epochs,
            "loss": float(np.mean(losses)),
            "val_mre_pct": val,
            "stage1_val_mre_pct": before,
            "seconds": time.perf_counter() - t0,
            "lr": lr_now,
            "best": improved,
        }
        if improved:
            best = val
            save(epoch + 1, val, usual_sigma)
        emit(EpochDone(epoch + 1, epochs, record["loss"], val, lr_now, record["seconds"], improved))
        with (out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info(
            "epoch %d/%d loss %.3f val MRE %.3f %% (stage 1: %.3f %%) %.0f s",
            epoch + 1,
            epochs,
            record["loss"],
            val,
            before,
            record["seconds"],
        )
    if not best_path.exists():
        raise RuntimeError(f"stage 2 never gave a finite validation error; nothing saved in {out}")
    return best_path
