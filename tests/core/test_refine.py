"""Stage 2 (per-vertebra refinement): patch geometry, sampling, checkpoints, the Localizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_nfdp.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    refiner_part,
    save_checkpoint,
    update_metrics,
)
from napari_nfdp.core.localizer import Localizer
from napari_nfdp.core.preprocess import apply_affine
from napari_nfdp.core.refine import (
    RefineNet,
    Refiner,
    RefinerConfig,
    cut_patches,
    patch_matrices,
    refinable,
    vertebra_frames,
)
from napari_nfdp.simulator import synthesize_spine

CONFIG = RefinerConfig(patch_size=32, context=2.0, max_side=1024, width=16)


def _vertebra(centre, angle_deg, width=40.0, height=30.0) -> np.ndarray:
    """(4, 2) (row, col) corners TL, TR, BL, BR of a rectangle turned by ``angle_deg``."""
    a = np.deg2rad(angle_deg)
    across = np.array([np.sin(a), np.cos(a)])  # left -> right, (row, col)
    down = np.array([np.cos(a), -np.sin(a)])
    half_w, half_h = across * width / 2, down * height / 2
    c = np.asarray(centre, float)
    return np.array(
        [c - half_w - half_h, c + half_w - half_h, c - half_w + half_h, c + half_w + half_h]
    )


def test_frames_of_a_turned_vertebra():
    corners = _vertebra((100.0, 80.0), 12.0)
    centre, angle, size = vertebra_frames(corners[None])
    np.testing.assert_allclose(centre[0], (100.0, 80.0))
    assert np.rad2deg(angle[0]) == pytest.approx(12.0)
    assert size[0] == pytest.approx(40.0)


def test_patch_is_upright_and_centred_on_the_vertebra():
    """In its own patch a turned vertebra is axis-aligned, centred, context x its size."""
    corners = _vertebra((100.0, 80.0), -20.0)
    matrix = patch_matrices(*vertebra_frames(corners[None]), CONFIG)[0]
    inside = apply_affine(np.linalg.inv(matrix), corners)
    middle = (CONFIG.patch_size - 1) / 2
    np.testing.assert_allclose(inside.mean(axis=0), (middle, middle), atol=1e-9)
    assert inside[0, 0] == pytest.approx(inside[1, 0])  # TL and TR on one patch row
    assert inside[0, 1] == pytest.approx(inside[2, 1])  # TL and BL on one patch column
    assert inside[1, 1] - inside[0, 1] == pytest.approx(CONFIG.patch_size / CONFIG.context)
    np.testing.assert_allclose(apply_affine(matrix, inside), corners, atol=1e-9)


def test_cut_patches_reads_the_pixels_the_matrix_names():
    image = torch.zeros(200, 160)
    image[118:123, 93:98] = 1.0  # a bright square, then the patches of two vertebrae around it
    frames = vertebra_frames(np.stack([_vertebra((110.0, 90.0), 15.0), _vertebra((60, 60), 0)]))
    matrices = patch_matrices(*frames, CONFIG)
    patches = cut_patches(image, matrices, CONFIG.patch_size)
    assert patches.shape == (2, 1, CONFIG.patch_size, CONFIG.patch_size)
    dot = apply_affine(np.linalg.inv(matrices[0]), np.array([120.0, 95.0]))
    brightest = np.unravel_index(int(patches[0, 0].argmax()), patches.shape[2:])
    assert np.abs(np.array(brightest) - dot).max() <= 1.5
    assert float(patches[1].max()) == 0.0  # the dot is not in the second patch


def test_off_image_patch_pixels_are_padding():
    image = torch.full((100, 100), 0.25)
    matrices = patch_matrices(np.array([[0.0, 0.0]]), np.zeros(1), np.array([40.0]), CONFIG)
    patch = cut_patches(image, matrices, CONFIG.patch_size)[0, 0]
    assert float(patch[0, 0]) == pytest.approx(-0.5)  # outside: PAD_VALUE
    assert float(patch[-1, -1]) == pytest.approx(0.25)


def test_refinable_needs_all_four_corners():
    visible = np.ones(12, bool)
    visible[5] = False
    assert refinable(visible).tolist() == [True, False, True]


def test_refiner_config_is_checked():
    assert RefinerConfig.from_dict(CONFIG.to_dict()) == CONFIG
    bad_values = ({"patch_size": 30}, {"context": 0.5}, {"width": True}, {"passes": 0}, {"x": 1})
    for bad in bad_values:
        with pytest.raises(ValueError):
            RefinerConfig.from_dict({**CONFIG.to_dict(), **bad})


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory, tiny_checkpoint):
    """The session's tiny stage-1 model with an (untrained) stage 2 added, stored as fp16."""
    torch.manual_seed(0)
    base = load_checkpoint(tiny_checkpoint)
    net = RefineNet(CONFIG)
    path = tmp_path_factory.mktemp("two_stage") / "two.pt"
    save_checkpoint(
        path,
        base.build_model(),
        landmark_names=base.landmark_names,
        metrics={"val_mre_pct": 1.0},
        refiner=refiner_part(net, CONFIG, {"w": torch.ones(2)}),
        half=True,
    )
    return path, net


def test_two_stage_checkpoint_round_trip(two_stage, tiny_checkpoint):
    path, net = two_stage
    ckpt = load_checkpoint(path)
    assert ckpt.refiner is not None and ckpt.refiner["config"] == CONFIG.to_dict()
    loaded = ckpt.build_refiner_net()
    patches = torch.randn(3, 1, CONFIG.patch_size, CONFIG.patch_size)
    with torch.no_grad():
        for a, b in zip(net.eval()(patches), loaded(patches), strict=True):
            torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)  # fp16 storage
    assert load_checkpoint(tiny_checkpoint).refiner is None  # single-stage still loads
    update_metrics(path, {"note": 1.0})
    assert load_checkpoint(path).refiner is not None  # rewriting metrics keeps stage 2


def test_broken_stage_two_is_refused(two_stage, tmp_path):
    payload = torch.load(two_stage[0], weights_only=True)
    key = next(iter(payload["refiner"]["state"]))
    payload["refiner"]["state"][key] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="stage-2"):
        load_checkpoint(tmp_path / "bad.pt")
    payload = torch.load(two_stage[0], weights_only=True)
    payload["refiner"]["state"][key] = payload["refiner"]["state"][key].float() * np.nan
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="not finite"):
        load_checkpoint(tmp_path / "nan.pt")


def test_stage_two_needs_the_spine_schema(two_stage, tmp_path):
    payload = torch.load(two_stage[0], weights_only=True)
    payload["landmark_names"] = [f"P{i:02d}" for i in range(1, 69)]
    torch.save(payload, tmp_path / "generic.pt")
    with pytest.raises(CheckpointError, match="spine schema"):
        load_checkpoint(tmp_path / "generic.pt")


def test_localizer_runs_stage_two_on_visible_vertebrae_only(two_stage):
    film = synthesize_spine(3, shape=(256, 128)).image
    localizer = Localizer.load(two_stage[0], device="cpu")
    assert isinstance(localizer.refiner, Refiner)
    both = localizer.predict(film)
    localizer.refiner = None
    first = localizer.predict(film)
    moved = np.linalg.norm(both.landmarks - first.landmarks, axis=1) > 1e-6
    chosen = np.repeat(refinable(first.visible), 4)
    assert moved[chosen].all() and not moved[~chosen].any()
    assert np.isfinite(both.landmarks).all() and (both.sigma > 0).all()


def test_refiner_maps_a_perfect_answer_back_to_the_true_corners():
    """A stage 2 that answers the true patch coordinates gives the true film corners."""
    truth = np.concatenate([_vertebra((60.0 + 40 * i, 70.0), 5.0 * i) for i in range(3)])
    guess = truth + np.random.default_rng(0).normal(0, 3.0, truth.shape)
    matrices = patch_matrices(*vertebra_frames(guess.reshape(-1, 4, 2)), CONFIG)
    answers = np.stack(
        [
            apply_affine(np.linalg.inv(m), t)
            for m, t in zip(matrices, truth.reshape(-1, 4, 2), strict=True)
        ]
    )

    class Oracle(torch.nn.Module):
        def forward(self, patches):
            mu = torch.as_tensor(answers / CONFIG.patch_size - 0.5, dtype=torch.float32)
            return mu, torch.full_like(mu, 0.01)

    refiner = Refiner(CONFIG, Oracle(), torch.device("cpu"))
    image = np.zeros((200, 160), np.float32)
    found, sigma = refiner(image, guess, np.ones_like(guess), np.ones(len(guess), bool))
    np.testing.assert_allclose(found, truth, atol=1e-3)
    assert sigma == pytest.approx(np.full_like(sigma, 0.01 * CONFIG.context * 40.0), rel=0.2)


def test_a_cascade_is_stage_two_run_on_its_own_answer():
    torch.manual_seed(1)
    net = RefineNet(CONFIG)
    once = Refiner(CONFIG, net, torch.device("cpu"))
    twice = Refiner(RefinerConfig(**{**CONFIG.to_dict(), "passes": 2}), net, torch.device("cpu"))
    film = synthesize_spine(4, shape=(256, 128))
    sigma, visible = np.ones((68, 2)), np.ones(68, bool)
    first = once(film.image, film.landmarks, sigma, visible)
    expected = once(film.image, first[0], first[1], visible)
    for got, want in zip(twice(film.image, film.landmarks, sigma, visible), expected, strict=True):
        np.testing.assert_allclose(got, want)
