"""``nfdp detect``: batch detection on real image files, CSV and overlay PNGs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_nfdp.cli import main
from napari_nfdp.core import detection
from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH
from napari_nfdp.core.registry import ModelRegistry
from napari_nfdp.io.images import read_image, write_image
from napari_nfdp.io.overlay import CURVE_COLOURS
from napari_nfdp.simulator import synthesize_spine


@pytest.fixture
def lenient(monkeypatch):
    """The tiny model is rough (its points can be out of order): switch the "no spine found?"
    check off here; tests/core/test_detection.py and the test below exercise it."""
    monkeypatch.setattr(detection, "plausibility_warning", lambda *args: None)


def test_detect_files_and_folders(tiny_checkpoint, tmp_path, lenient):
    folder = tmp_path / "films"
    folder.mkdir()
    for seed in (3, 4):
        write_image(folder / f"film{seed}.png", synthesize_spine(seed, shape=(600, 260)).image)
    single = tmp_path / "single.tif"
    write_image(single, synthesize_spine(5, shape=(500, 240)).image)
    (folder / "broken.png").write_text("not an image")
    out, overlays = tmp_path / "results.csv", tmp_path / "overlays"

    code = main(
        [
            "detect",
            str(folder),
            str(single),
            "--out",
            str(out),
            "--overlays",
            str(overlays),
            "--checkpoint",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ]
    )

    assert code == 1  # one image failed, the others were analysed
    rows = list(csv.DictReader(out.open()))
    assert [r["image"].split("/")[-1] for r in rows] == [
        "broken.png",
        "film3.png",
        "film4.png",
        "single.tif",
    ]
    assert rows[0]["status"].startswith("error:")
    for row in rows[1:]:
        assert row["status"] == "ok"
        assert row["measured_on"] == "pixels" and row["angle_unit"] == "deg"
        assert float(row["T1-top-left_sigma"]) > 0
        assert row["T1-top-left_visible"] == "1"  # the model places it on the film
        assert np.isfinite(float(row["L5-bottom-right_row"]))
    assert rows[1]["PT"] != "" and rows[1]["MT_ends"].count("-") == 1
    picture, _ = read_image(overlays / "film3_nfdp.png")
    assert picture.shape == (600, 260, 3) and picture.dtype == np.uint8
    assert (picture[..., 1] > picture[..., 0] + 100).any()  # green landmark dots drawn
    corner = picture[:40].astype(int)  # the angles, in each curve's colour
    for colour in CURVE_COLOURS.values():
        assert (np.abs(corner - colour).sum(axis=2) < 60).any()


def test_detect_missing_path_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    code = main(
        [
            "detect",
            str(tmp_path / "nope.png"),
            "--out",
            str(tmp_path / "r.csv"),
            "--checkpoint",
            str(tiny_checkpoint),
        ]
    )
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_an_implausible_film_gets_its_status_and_no_angles(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(detection, "NO_SPINE_SIGMA_FACTOR", 1e-6)  # every film looks doubtful
    film = write_image(tmp_path / "chest.png", synthesize_spine(3, shape=(600, 260)).image)
    out = tmp_path / "r.csv"
    assert main(["detect", str(film), "--out", str(out), "--checkpoint", str(tiny_checkpoint)]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert row["status"].startswith("implausible: No spine found?")
    assert row["PT"] == row["MT"] == row["TL"] == "" and row["curve_type"] == ""
    assert row["T1-top-left_row"] != ""  # the points are still there for checking


@pytest.fixture
def registry(tmp_path, monkeypatch, tiny_checkpoint) -> ModelRegistry:
    """A private model registry ($NAPARI_NFDP_HOME): v1 the tiny model, v2 the bundled one."""
    monkeypatch.setenv("NAPARI_NFDP_HOME", str(tmp_path / "home"))
    registry = ModelRegistry.default()
    registry.add_file(tiny_checkpoint, note="tiny")
    registry.add_file(DEFAULT_MODEL_PATH, note="bundled copy")
    return registry


def _detect_one(folder, *options: str) -> dict[str, str]:
    """The CSV row of ``nfdp detect`` on one synthetic film with ``options``."""
    film = folder / "film.png"
    if not film.exists():
        write_image(film, synthesize_spine(3, shape=(600, 260)).image)
    out = folder / "r.csv"
    assert main(["detect", str(film), "--out", str(out), "--device", "cpu", *options]) == 0
    (row,) = csv.DictReader(out.open())
    return row


def test_model_option_picks_a_registry_version(registry, tiny_checkpoint, tmp_path, lenient):
    registry.select("v1")
    chosen = _detect_one(tmp_path, "--model", "v2")
    assert chosen["model"] == "v2"
    assert registry.selected_id() == "v1"  # naming a version does not change the GUI's choice
    selected = _detect_one(tmp_path)  # by default the version selected in the GUI
    assert selected["model"] == "v1"
    assert chosen["T1-top-left_row"] != selected["T1-top-left_row"]  # other weights
    by_file = _detect_one(tmp_path, "--checkpoint", str(tiny_checkpoint))
    assert by_file["model"] == tiny_checkpoint.name
    assert by_file["T1-top-left_row"] == selected["T1-top-left_row"]
    registry.select("v2")
    assert _detect_one(tmp_path)["model"] == "v2"


def test_default_model_is_the_bundled_one_without_a_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_NFDP_HOME", str(tmp_path / "home"))
    assert _detect_one(tmp_path)["model"] == "bundled"


def test_unknown_model_version_is_a_clear_error(registry, tiny_checkpoint, tmp_path, capsys):
    film = write_image(tmp_path / "film.png", synthesize_spine(3, shape=(600, 260)).image)
    out = str(tmp_path / "r.csv")
    assert main(["detect", str(film), "--out", out, "--model", "v9"]) == 2
    assert "no model version 'v9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a version or a file, not both
        main(["detect", str(film), "--out", out, "--model", "v1", "--checkpoint", "x.pt"])


def test_markups_option_writes_slicer_markups_per_film(tiny_checkpoint, tmp_path, lenient):
    from napari_nfdp.io.markups import read_markups

    film = write_image(tmp_path / "film.png", synthesize_spine(3, shape=(600, 260)).image)
    out, folder = tmp_path / "r.csv", tmp_path / "slicer"
    args = ["detect", str(film), "--out", str(out), "--markups", str(folder)]
    assert main([*args, "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]) == 0
    row = next(csv.DictReader(out.open()))
    back = read_markups(folder / "film.mrk.json")
    assert back.image_name == "film.png" and back.image_shape == (600, 260)
    assert set(back.source) == {"model"} and back.model == tiny_checkpoint.name
    expected = [float(row["T1-top-left_row"]), float(row["T1-top-left_col"])]
    np.testing.assert_allclose(back.points[0], expected, atol=0.006)
    markups = json.loads((folder / "film.mrk.json").read_text())["markups"]
    angles = {m["name"].split()[0]: m for m in markups if m["type"] == "Angle"}
    assert angles["MT"]["measurements"][0]["value"] == pytest.approx(float(row["MT"]), abs=0.06)
