"""``nfdp detect``: batch detection on real image files, CSV and overlay PNGs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_nfdp.cli import main
from napari_nfdp.core import detection
from napari_nfdp.io.images import read_image, write_image
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
