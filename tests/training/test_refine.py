"""Training stage 2: jittered patches, real training steps, the CLI, fine-tuning both stages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_nfdp.core.checkpoint import load_checkpoint
from napari_nfdp.core.localizer import REFINED_SIGMA_KEY, Localizer
from napari_nfdp.core.preprocess import apply_affine
from napari_nfdp.core.refine import RefinerConfig, patch_matrices, vertebra_frames
from training.augment import AugmentConfig
from training.events import Done, EpochDone, Started
from training.finetune import REFIT_EPOCHS, finetune, two_stage_mre
from training.fit import split_validation
from training.loop import TrainingCancelled
from training.refine import Jitter, VertebraPatches, train_refiner

CONFIG = RefinerConfig(patch_size=32, context=2.2, width=16)


def test_patches_hold_their_vertebra_where_the_target_says(small_samples):
    """Without jitter the target corners are the true corners in patch coordinates, and the
    patch is the film around them (its brightest rows are the vertebra, not the margin)."""
    data = VertebraPatches(small_samples[:2], CONFIG, Jitter(0, 0, 0), AugmentConfig.disabled(), 0)
    assert len(data) == 34  # 17 vertebrae on each small film
    patch, target, visible = data[3]
    assert patch.shape == (1, 32, 32) and visible.tolist() == [1, 1, 1, 1]
    corners = small_samples[0].landmarks.reshape(-1, 4, 2)[3]
    matrix = patch_matrices(*vertebra_frames(corners[None]), CONFIG)[0]
    expected = apply_affine(np.linalg.inv(matrix), corners) / 32 - 0.5
    np.testing.assert_allclose(target.numpy(), expected, atol=1e-5)
    assert abs(float(patch.mean())) < 1e-4 and float(patch.std()) == pytest.approx(1, abs=0.05)


def test_jitter_moves_the_patch_and_the_target_with_it(small_samples):
    data = VertebraPatches(small_samples[:1], CONFIG, Jitter(), AugmentConfig.disabled(), 0)
    targets = []
    for epoch in range(3):
        data.epoch = epoch
        targets.append(data[5][1].numpy())
    assert not np.allclose(targets[0], targets[1])
    data.epoch = 0
    np.testing.assert_array_equal(data[5][1].numpy(), targets[0])  # seeded per epoch and item


def test_jitter_measured_from_stage_one_errors():
    rng = np.random.default_rng(0)
    truth = [rng.uniform(50, 150, (68, 2)) for _ in range(3)]
    shapes = [(200, 200)] * 3
    same = Jitter.measured(truth, truth, shapes)
    assert same.centre == 0 and same.angle == 0 and same.log_size == 0
    shifted = Jitter.measured(truth, [t + 2.0 for t in truth], shapes)
    assert shifted.centre > 0 and shifted.angle == pytest.approx(0, abs=1e-9)
    # vertebrae off the film (stage 1 extrapolates there) are not stage 2's to correct
    cut = [(200, 200)] * 3
    off = [t.copy() for t in truth]
    for t in off:
        t[:8] += 500.0  # the first two vertebrae lie below the film, found 40 px off
    far = [np.where(np.arange(68)[:, None] < 8, t + 40.0, t) for t in off]
    assert Jitter.measured(off, far, cut) == same


def test_training_stage_two_makes_a_two_stage_checkpoint(tiny_checkpoint, small_samples, tmp_path):
    base = load_checkpoint(tiny_checkpoint)
    best = train_refiner(
        base, small_samples[:4], small_samples[4:], tmp_path, config=CONFIG, epochs=3, lr=2e-3
    )
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss"] < rows[0]["loss"]  # real optimisation steps
    ckpt = load_checkpoint(best)
    assert ckpt.refiner is not None and ckpt.metrics[REFINED_SIGMA_KEY] > 0
    assert ckpt.metrics["val_mre_pct"] == pytest.approx(min(r["val_mre_pct"] for r in rows))
    assert Localizer(ckpt, torch.device("cpu")).refiner is not None


def test_stage_two_training_can_be_stopped(tiny_checkpoint, small_samples, tmp_path):
    with pytest.raises(TrainingCancelled):
        train_refiner(
            load_checkpoint(tiny_checkpoint),
            small_samples[:4],
            small_samples[4:],
            tmp_path,
            config=CONFIG,
            epochs=2,
            should_stop=lambda: True,
        )
    assert not (tmp_path / "best.pt").exists()


def test_finetune_refits_both_stages(tiny_checkpoint, small_samples, tmp_path):
    """A two-stage base comes back two-stage, stage 2 refitted from the base's on the corrected
    corners; before / after are the two-stage errors; a single-stage base stays single."""
    two = train_refiner(
        load_checkpoint(tiny_checkpoint),
        small_samples[:4],
        small_samples[4:],
        tmp_path / "two",
        config=CONFIG,
        epochs=1,
    )
    images = [s.image for s in small_samples]
    points = [s.landmarks for s in small_samples]
    events = []
    out = finetune(two, images, points, tmp_path / "ft", epochs=1, progress=events.append)
    result = load_checkpoint(out)
    stages = [e.stage for e in events if isinstance(e, Started)]
    assert stages == [1, 2]  # the dock's progress bar follows both stages
    second = events[[getattr(e, "stage", 0) == 2 for e in events].index(True) :]
    assert sum(isinstance(e, EpochDone) for e in second) == REFIT_EPOCHS
    assert isinstance(events[-1], Done)
    # a few films cannot re-estimate BatchNorm statistics: both stages keep the base's
    base = load_checkpoint(two)
    for key in [k for k in base.model_state if k.endswith("running_var")][:3]:
        torch.testing.assert_close(result.model_state[key], base.model_state[key])
    for key in [k for k in base.refiner["state"] if k.endswith("running_mean")][:3]:
        torch.testing.assert_close(result.refiner["state"][key], base.refiner["state"][key])
    assert result.refiner is not None and result.training["refiner"]["init"] is True
    log = (tmp_path / "ft" / "stage2" / "log.jsonl").read_text().splitlines()
    assert len(log) == REFIT_EPOCHS
    _, held_out = split_validation(list(range(len(images))), 0.2, 0)
    before = two_stage_mre(load_checkpoint(two), [small_samples[i] for i in held_out], "cpu")
    assert result.metrics["val_mre_pct_before"] == pytest.approx(before)
    assert result.metrics["val_mre_pct_after"] == result.metrics["val_mre_pct"]
    single = load_checkpoint(finetune(tiny_checkpoint, images, points, tmp_path / "one", epochs=1))
    assert single.refiner is None
