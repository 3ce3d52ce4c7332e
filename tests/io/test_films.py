"""The save and restore rules of films, without a viewer (real files on disk)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_nfdp.core.atomic import ReadOnlyFileError
from napari_nfdp.core.localizer import Prediction
from napari_nfdp.core.session import LandmarkSession
from napari_nfdp.io.annotations import Annotation, read_annotation, sidecar_path, write_annotation
from napari_nfdp.io.films import FilmShelf, autosave_refusal, write

NAMES = ("A", "B", "C")
SHAPE = (100, 50)


def _saved(path: Path, shape=SHAPE) -> None:
    points = np.array([[10.0, 20.0], [30.0, 20.0], [np.nan, np.nan]])
    write_annotation(path, Annotation("film.png", shape, NAMES, points, ["human"] * 3))


def _detected(doubt: str | None = None) -> LandmarkSession:
    prediction = Prediction(
        np.ones((3, 2)), np.ones((3, 2)), NAMES, np.ones(3, bool), np.zeros(3, bool)
    )
    return LandmarkSession.from_prediction(prediction, "v1", doubt)


def _film(shelf: FilmShelf, image: Path):
    return shelf.film(str(image), image.name, SHAPE, image, None)


def test_a_new_film_reads_its_sidecar(tmp_path):
    image = tmp_path / "film.png"
    _saved(sidecar_path(image))
    film, restored = _film(FilmShelf(), image)
    assert film.session is not None and film.blocked is None and not film.dirty
    assert film.session.hidden_count == 1 and "1 not visible" in restored.message
    shelf = FilmShelf()
    _film(shelf, image)
    assert _film(shelf, image)[1] is None  # read once: the shelf then owns the session


@pytest.mark.parametrize("problem", ["garbage", "other size", "read-only"])
def test_problems_block_autosave_and_keep_the_file(tmp_path, problem):
    image = tmp_path / "film.png"
    target = sidecar_path(image)
    if problem == "garbage":
        target.write_bytes(b"\x00\xff{")
    else:
        _saved(target, shape=(99, 50) if problem == "other size" else SHAPE)
    if problem == "read-only":
        target.chmod(0o444)
    before = target.read_bytes()
    film, restored = _film(FilmShelf(), image)
    assert film.blocked and restored.level in ("error", "warning")
    if film.session is None:
        film.session = _detected()
    assert autosave_refusal(film).startswith("Autosave is off")
    assert target.read_bytes() == before
    if problem == "garbage":
        assert target.with_name(target.name + ".unreadable").read_bytes() == before
    if problem == "read-only":
        with pytest.raises(ReadOnlyFileError):
            write(film)
        assert target.read_bytes() == before


def test_a_doubtful_detection_is_not_autosaved(tmp_path):
    film, _ = _film(FilmShelf(), tmp_path / "film.png")
    film.session = _detected("odd")
    assert "Not saved yet" in autosave_refusal(film)
    film.session.confirm()
    assert autosave_refusal(film) is None
    assert read_annotation(write(film)).model == "v1"


def test_choosing_a_folder_reads_what_is_there(tmp_path):
    shelf = FilmShelf()
    image = tmp_path / "film.png"
    film, _ = _film(shelf, image)
    film.session = _detected()
    folder = tmp_path / "theirs"
    _saved(sidecar_path(image, folder))
    outcomes = shelf.set_folder(folder)
    assert len(outcomes) == 1 and film.session.human_count == 3
    assert film.sidecar == sidecar_path(image, folder)
    empty = tmp_path / "empty"
    assert shelf.set_folder(empty) == [] and film.dirty  # written there at the next save
