"""The training loop: real optimisation steps on synthetic radiographs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_nfdp.core.checkpoint import load_checkpoint
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from tests.conftest import TINY_INPUT
from training.augment import AugmentConfig
from training.events import EpochDone, Started, Step
from training.loop import TrainConfig, TrainingCancelled, train, validate


def tiny_config(**overrides) -> TrainConfig:
    cfg = TrainConfig(input_size=TINY_INPUT, batch_size=4, epochs=2, seed=0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_overfit_drives_training_mre_down(small_samples, tmp_path):
    samples = small_samples[:4]
    cfg = tiny_config(epochs=40, lr=2e-3, augment=AugmentConfig.disabled())
    torch.manual_seed(0)
    events = []
    best = train(
        cfg,
        samples,
        samples,
        tmp_path,
        landmark_names=SPINE_LANDMARK_NAMES,
        progress=events.append,
    )
    assert isinstance(events[0], Started) and events[0].epochs == 40
    assert isinstance(events[1], Step) and (events[1].epoch, events[1].step) == (1, 1)
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert len(epochs) == 40
    first, final = epochs[0].val_mre_pct, min(e.val_mre_pct for e in epochs)
    assert final < 0.5 * first, (first, final)
    assert epochs[-1].loss < epochs[0].loss
    ckpt = load_checkpoint(best)
    assert ckpt.metrics["val_mre_pct"] == pytest.approx(final)
    net = ckpt.build_model()
    again = validate(net, samples, ckpt.config, torch.device("cpu")).mre_pct
    assert again == pytest.approx(final, rel=1e-4)


def test_interrupted_run_resumes_where_it_stopped(small_samples, tmp_path):
    cfg = tiny_config(epochs=4)
    data = (small_samples[:2], small_samples[2:3], tmp_path)
    calls = []

    def stop_in_third_epoch() -> bool:  # one step per epoch: the third call is epoch 3
        calls.append(1)
        return len(calls) == 3

    with pytest.raises(TrainingCancelled):
        train(cfg, *data, landmark_names=SPINE_LANDMARK_NAMES, should_stop=stop_in_third_epoch)
    run_id = json.loads((tmp_path / "config.json").read_text())["run_id"]
    train(cfg, *data, landmark_names=SPINE_LANDMARK_NAMES, resume=True)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "config.json").read_text())["run_id"] == run_id
    lrs = [r["lr"] for r in log]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(cfg.lr_end_factor * 1e-3)


def test_missing_landmarks_are_skipped(small_samples, tmp_path):
    sample = small_samples[0]
    hidden = type(sample)(
        image=sample.image,
        landmarks=sample.landmarks.copy(),
        spacing=sample.spacing,
        name="cropped",
    )
    hidden.landmarks[:20] = np.nan
    events = []
    train(
        tiny_config(epochs=1),
        [hidden, small_samples[1]],
        [hidden],
        tmp_path,
        landmark_names=SPINE_LANDMARK_NAMES,
        progress=events.append,
    )
    epoch = next(e for e in events if isinstance(e, EpochDone))
    assert np.isfinite(epoch.loss) and np.isfinite(epoch.val_mre_pct)


def test_should_stop_cancels_between_steps(small_samples, tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(TrainingCancelled):
        train(
            tiny_config(epochs=5, batch_size=1),
            small_samples[:3],
            small_samples[3:4],
            tmp_path,
            landmark_names=SPINE_LANDMARK_NAMES,
            should_stop=stop,
        )
    assert len(calls) == 2
    assert not (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("variant,loss", [("heatmap", "nfdp"), ("regression", "l1")])
def test_other_variants_and_losses_train(small_samples, tmp_path, variant, loss):
    best = train(
        tiny_config(epochs=1, variant=variant, loss=loss),
        small_samples[:2],
        small_samples[2:3],
        tmp_path,
        landmark_names=SPINE_LANDMARK_NAMES,
    )
    ckpt = load_checkpoint(best)
    assert ckpt.config.variant == variant
    assert ckpt.training["config"]["loss"] == loss
