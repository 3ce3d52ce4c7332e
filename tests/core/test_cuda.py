"""CUDA checks: skipped on machines without a GPU (CI), run by ``benchmarks/device_check.sh``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nfdp.core.localizer import Localizer
from napari_nfdp.simulator import synthesize_spine
from training.flow import RealNVP
from training.loop import NFDPModel, training_step

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_predictions_match_cpu(tiny_checkpoint):
    film = synthesize_spine(3, shape=(256, 128)).image
    on_cpu = Localizer.load(tiny_checkpoint, device="cpu").predict(film)
    on_gpu = Localizer.load(tiny_checkpoint, device="cuda").predict(film)
    np.testing.assert_allclose(on_gpu.landmarks, on_cpu.landmarks, atol=0.05 * 256 / 100)
    np.testing.assert_array_equal(on_gpu.visible, on_cpu.visible)


def test_amp_training_steps_lower_the_loss(tiny_checkpoint):
    loc = Localizer.load(tiny_checkpoint, device="cuda")
    model = NFDPModel(loc.model, RealNVP(), "nfdp").cuda().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    torch.manual_seed(0)
    images = torch.randn(8, 1, *loc.config.input_size, device="cuda")
    target = (torch.rand(8, loc.config.num_landmarks, 2, device="cuda") - 0.5) * 0.8
    visible = torch.ones(8, loc.config.num_landmarks, device="cuda")
    losses = [
        training_step(model, optimizer, scaler, (images, target, visible), True) for _ in range(60)
    ]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_finetune_runs_on_cuda(tiny_checkpoint, tmp_path):
    from training.finetune import finetune

    cases = [synthesize_spine(40 + i, shape=(256, 128)) for i in range(4)]
    out = finetune(
        tiny_checkpoint,
        [c.image for c in cases],
        [c.landmarks for c in cases],
        tmp_path / "run",
        epochs=2,
        device="cuda",
    )
    assert Localizer.load(out, device="cuda").predict(cases[0].image).landmarks.shape == (68, 2)


def test_two_stage_predictions_match_cpu(tiny_checkpoint, small_samples, tmp_path):
    """Stage 2 (patch sampling, its network, the map back) gives the CPU's answer on CUDA."""
    from napari_nfdp.core.checkpoint import load_checkpoint
    from napari_nfdp.core.refine import RefinerConfig
    from training.refine import train_refiner

    config = RefinerConfig(patch_size=32, width=16)
    two = train_refiner(
        load_checkpoint(tiny_checkpoint),
        small_samples[:4],
        small_samples[4:],
        tmp_path,
        config=config,
        epochs=2,
        device="cuda",
    )
    film = synthesize_spine(3, shape=(256, 128)).image
    on_cpu = Localizer.load(two, device="cpu").predict(film)
    on_gpu = Localizer.load(two, device="cuda").predict(film)
    assert Localizer.load(two, device="cuda").refiner is not None
    np.testing.assert_allclose(on_gpu.landmarks, on_cpu.landmarks, atol=0.05 * 256 / 100)
    np.testing.assert_allclose(on_gpu.sigma, on_cpu.sigma, rtol=0.05, atol=1e-3)
