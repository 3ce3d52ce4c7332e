"""Shared fixtures: small synthetic spine cases (real generator output, small shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.preprocess import to_grey_float32
from napari_nfdp.simulator import synthesize_spine
from training.datasets import Sample

SMALL_SHAPE = (256, 128)
TINY_INPUT = (64, 32)


def small_sample(seed: int) -> Sample:
    """A synthetic spine radiograph at 256 x 128 as an in-memory training sample."""
    case = synthesize_spine(seed, shape=SMALL_SHAPE)
    return Sample(
        image=to_grey_float32(case.image),
        landmarks=case.landmarks.copy(),
        spacing=case.spacing,
        name=f"synth-{seed}",
    )


@pytest.fixture(scope="session")
def small_samples() -> list[Sample]:
    return [small_sample(seed) for seed in range(6)]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, small_samples):
    """A real (tiny, briefly trained) spine model checkpoint, trained once per session."""
    from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
    from training.augment import AugmentConfig
    from training.loop import TrainConfig, train

    cfg = TrainConfig(
        input_size=TINY_INPUT, batch_size=4, epochs=8, lr=2e-3, augment=AugmentConfig.disabled()
    )
    out = tmp_path_factory.mktemp("tiny_model")
    return train(
        cfg, small_samples[:4], small_samples[4:], out, landmark_names=SPINE_LANDMARK_NAMES
    )
