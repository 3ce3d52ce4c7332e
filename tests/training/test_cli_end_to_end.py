"""End to end through the command lines: synth -> fit -> evaluate -> Localizer -> finetune."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from napari_nfdp import Localizer
from napari_nfdp.core.checkpoint import load_checkpoint
from training.__main__ import main as training_main
from training.datasets import open_dataset
from training.events import Baseline, Done, EpochDone
from training.finetune import finetune
from training.loop import TrainingCancelled
from training.plot import LOSS_COLOUR, VAL_COLOUR

TINY = ["--input-size", "64", "32", "--max-side", "256", "--batch-size", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for two epochs through ``python -m training`` on synthetic films."""
    root = tmp_path_factory.mktemp("e2e")
    data = root / "synth"
    assert training_main(["synth", "--n", "4", "--out", str(data), "--seed", "0"]) == 0
    assert training_main(["synth", "--n", "2", "--out", str(data), "--seed", "50"]) == 0
    assert (
        training_main(["synth", "--n", "2", "--out", str(data), "--seed", "90", "--split", "test"])
        == 0
    )
    run = root / "run"
    assert (
        training_main(["fit", "--data", str(data), "--out", str(run), "--epochs", "2", *TINY]) == 0
    )
    return data, run


def test_fit_writes_a_self_describing_checkpoint(trained):
    data, run = trained
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.config.num_landmarks == 68 and ckpt.config.input_size == (64, 32)
    assert ckpt.training["data"]["train_images"] + ckpt.training["data"]["val_images"] == 6
    assert np.isfinite(ckpt.metrics["val_mre_pct"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2


def test_a_run_repeats_from_its_config(trained, tmp_path, capsys):
    data, run = trained
    first = json.loads((run / "config.json").read_text())
    again = tmp_path / "again"
    args = ["fit", "--config", str(run / "config.json"), "--out", str(again)]
    assert training_main([*args, "--epochs", "1", "--seed", "3", "--progress"]) == 0
    second = json.loads((again / "config.json").read_text())
    assert second["train"] == {**first["train"], "epochs": 1, "seed": 3}  # flags override
    assert second["train"]["input_size"] == [64, 32] and second["train"]["batch_size"] == 2
    kept = ("source", "val_data", "val_fraction", "limit", "max_side", "backbone_weights")
    assert {k: second["data"][k] for k in kept} == {k: first["data"][k] for k in kept}
    assert second["data"]["source"] == str(data) and second["data"]["max_side"] == 256
    assert len((again / "log.jsonl").read_text().splitlines()) == 1
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err  # the progress bar, asked for off a terminal
    assert captured.out.count("best checkpoint:") == 1 and "epoch    1/1" in captured.out


def test_config_must_be_a_run_config(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(SystemExit):
        training_main(["fit", "--config", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "no 'train' settings" in capsys.readouterr().err


def test_plot_draws_the_curves_of_a_run(trained, tmp_path):
    _, run = trained
    assert training_main(["plot", str(run)]) == 0
    with Image.open(run / "curves.png") as picture:
        assert picture.format == "PNG" and picture.size == (1000, 700)
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    for colour in (LOSS_COLOUR, VAL_COLOUR):  # the loss and the validation curve
        assert (np.abs(pixels - colour).sum(axis=2) < 30).sum() > 50
    out = tmp_path / "small.png"
    assert training_main(["plot", str(run), "--out", str(out), "--size", "400", "300"]) == 0
    with Image.open(out) as picture:
        assert picture.size == (400, 300)


def test_fit_can_start_from_a_checkpoint(trained, tmp_path):
    data, run = trained
    base = load_checkpoint(run / "best.pt")
    warm = tmp_path / "warm"
    # A vanishing learning rate keeps the starting weights: validation must match the base's.
    args = ["fit", "--data", str(data), "--out", str(warm), "--epochs", "1", "--lr", "1e-12"]
    assert training_main([*args, "--init", str(run / "best.pt"), *TINY]) == 0
    started = load_checkpoint(warm / "best.pt")
    assert started.training["data"]["init_checkpoint"] == str(run / "best.pt")
    assert started.metrics["val_mre_pct"] == pytest.approx(base.metrics["val_mre_pct"], rel=1e-3)


def test_fit_refuses_a_checkpoint_of_another_architecture(trained, tmp_path, capsys):
    data, run = trained
    args = ["fit", "--data", str(data), "--out", str(tmp_path), "--init", str(run / "best.pt")]
    assert training_main([*args, *TINY[:1], "96", "48", *TINY[3:]]) == 2
    assert "input_size=(64, 32)" in capsys.readouterr().err


def test_evaluate_reports_mre_sdr_and_cobb(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "report.json"
    code = training_main(
        ["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data), "--json", str(out)]
    )
    assert code == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["images"] == 2 and summary["split"] == "test"
    assert summary["mre_px"] > 0 and np.isfinite(summary["mre_pct_height"])
    assert set(summary["sdr_pct_height"]) == {"1.0", "2.0"}
    assert summary["cobb_images"] == 2 and 0 <= summary["smape"] <= 100
    assert set(summary["cobb_mae_deg"]) == {"pt", "mt", "tl"}
    assert "mre_px" in capsys.readouterr().out


def test_localizer_round_trip_on_any_input(trained):
    _, run = trained
    loc = Localizer.load(run / "best.pt", device="cpu")
    rng = np.random.default_rng(1)
    images = [
        rng.integers(0, 4000, size=(700, 300), dtype=np.uint16),
        rng.random((300, 500)).astype(np.float32),
        rng.integers(0, 255, size=(400, 320, 3), dtype=np.uint8),
    ]
    for image in images:
        pred = loc.predict(image)
        assert pred.landmarks.shape == (68, 2) and pred.landmarks.dtype == np.float64
        assert np.isfinite(pred.landmarks).all() and (pred.sigma > 0).all()
    batch = loc.predict_batch(images)
    single = [loc.predict(image) for image in images]
    for a, b in zip(batch, single, strict=True):
        np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=1e-4, atol=1e-3)


def test_finetune_reports_before_and_after(trained, tmp_path):
    data, run = trained
    samples = [s.load() for s in open_dataset(data, split="training")][:3]
    samples[0].landmarks[:10] = np.nan  # a cropped film: missing landmarks are skipped
    events = []
    best = finetune(
        run / "best.pt",
        [s.image for s in samples],
        [s.landmarks for s in samples],
        tmp_path / "ft",
        epochs=1,
        progress=events.append,
    )
    metrics = load_checkpoint(best).metrics
    assert metrics["holdout_images"] == 1 and metrics["corrected_images"] == 3
    assert np.isfinite(metrics["val_mre_pct_before"]) and np.isfinite(metrics["val_mre_pct_after"])
    assert isinstance(events[0], Baseline) and events[0].holdout_images == 1
    assert isinstance(events[-1], Done)
    assert events[-1].val_mre_pct_after == pytest.approx(metrics["val_mre_pct_after"])
    assert any(isinstance(e, EpochDone) for e in events)
    Localizer.load(best).predict(samples[0].image)


def test_finetune_cancel_writes_nothing(trained, tmp_path):
    data, run = trained
    samples = [s.load() for s in open_dataset(data, split="training")][:3]
    with pytest.raises(TrainingCancelled):
        finetune(
            run / "best.pt",
            [s.image for s in samples],
            [s.landmarks for s in samples],
            tmp_path / "ft",
            epochs=3,
            should_stop=lambda: True,
        )
    assert not (tmp_path / "ft" / "best.pt").exists()


def test_finetune_rejects_bad_input(trained, tmp_path):
    _, run = trained
    image = np.zeros((200, 100), np.uint16)
    with pytest.raises(ValueError, match="landmark sets"):
        finetune(run / "best.pt", [image], [], tmp_path)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        finetune(run / "best.pt", [image], [np.zeros((19, 2))], tmp_path)
    with pytest.raises(ValueError, match="no visible landmarks"):
        finetune(run / "best.pt", [image], [np.full((68, 2), np.nan)], tmp_path)


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert training_main(["fit", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_synth_projected_style_and_preview(tmp_path):
    from napari_nfdp.io.images import read_image
    from napari_nfdp.simulator import simulate_projected

    data = tmp_path / "projected"
    assert training_main(["synth", "--n", "2", "--out", str(data), "--style", "projected",
                          "--seed", "13", "--ext", "png"]) == 0  # fmt: skip
    samples = open_dataset(data, split="training")
    film = simulate_projected(13, photometric="MONOCHROME2")
    assert [s.name for s in samples] == ["synth-000013.png", "synth-000014.png"]
    # landmarks off the film (a lumbar field here) keep their true, outside positions
    sample = samples[0]
    np.testing.assert_allclose(sample.landmarks, film.landmarks, atol=1e-3)
    height, width = read_image(sample.path)[0].shape[:2]
    points = sample.landmarks
    inside = (points >= 0).all(axis=1) & (points[:, 0] < height) & (points[:, 1] < width)
    assert not film.visible.all()
    np.testing.assert_array_equal(inside, film.visible)
    sheet = tmp_path / "sheet.png"
    assert training_main(["synth", "--n", "2", "--out", str(data), "--preview", str(sheet)]) == 0
    picture, _ = read_image(sheet)
    assert picture.ndim == 3 and picture.shape[0] > 100
