"""Shared fixtures: small synthetic spine cases (real generator output, small shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.core.preprocess import to_grey_float32
from napari_nfdp.core.synthetic import synthesize_spine
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
