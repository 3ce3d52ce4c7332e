"""What counts as a correction, and reading the corrected images (shared by GUI and CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nfdp.io.annotations import Annotation, sidecar_path, write_annotation
from napari_nfdp.io.corrections import find_corrections, read_corrections
from napari_nfdp.io.images import write_image

NAMES = ("P0", "P1", "P2")
SHAPE = (40, 20)


def _film(folder, name: str, source: list[str], shape=SHAPE, names=NAMES, sidecar_folder=None):
    image = write_image(folder / name, np.full(SHAPE, 1000, np.uint16))
    points = np.array([[5.0, 5.0], [20.0, 10.0], [np.nan, np.nan]])[: len(names)]
    write_annotation(
        sidecar_path(image, sidecar_folder),
        Annotation(
            image_name=name,
            image_shape=shape,
            landmark_names=names,
            points=points,
            source=source,
        ),
    )
    return image


def test_only_sidecars_with_human_points_count(tmp_path):
    human = _film(tmp_path, "a.png", ["model", "human", "model"])
    model = _film(tmp_path, "b.png", ["model"] * 3)
    bare = write_image(tmp_path / "c.png", np.zeros(SHAPE, np.uint8))
    found, notes = find_corrections([human, model, bare, human], None, NAMES)
    assert [c.image for c in found] == [human] and notes == []
    assert found[0].sidecar == sidecar_path(human)


def test_other_landmarks_and_no_visible_point_are_noted(tmp_path):
    other = _film(tmp_path, "a.png", ["human"] * 2, names=("X", "Y"))
    empty = write_image(tmp_path / "b.png", np.zeros(SHAPE, np.uint8))
    write_annotation(
        sidecar_path(empty),
        Annotation("b.png", SHAPE, NAMES, np.full((3, 2), np.nan), ["human"] * 3),
    )
    found, notes = find_corrections([other, empty], None, NAMES)
    assert found == []
    assert notes == [
        "skipped a.png.nfdp.json: its landmarks differ from the model's",
        "skipped b.png.nfdp.json: it has no visible landmark",
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"a":' * 5000, "nested too deeply"),  # RecursionError from the JSON decoder
        ("PLACEHOLDER", "too large"),  # OverflowError: a 400-digit coordinate
        ("[1, 2", "not a readable annotation"),  # ValueError
        (b"\xff\xfe\x00", "not a readable annotation"),  # not UTF-8
    ],
)
def test_any_unreadable_sidecar_is_skipped_with_a_note(tmp_path, text, why):
    good = _film(tmp_path, "good.png", ["human"] * 3)
    bad = _film(tmp_path, "bad.png", ["human"] * 3)
    if text == "PLACEHOLDER":
        text = sidecar_path(bad).read_text().replace("5.0", "9" * 400, 1)
    if isinstance(text, bytes):
        sidecar_path(bad).write_bytes(text)
    else:
        sidecar_path(bad).write_text(text)
    found, notes = find_corrections([bad, good], None, NAMES)
    assert [c.image for c in found] == [good]
    assert len(notes) == 1 and notes[0].startswith("skipped bad.png.nfdp.json: ")
    assert why in notes[0].lower()
    assert "bad.png.nfdp.json: bad.png.nfdp.json" not in notes[0]


def test_annotation_folder_comes_first(tmp_path):
    folder = tmp_path / "ann"
    folder.mkdir()
    image = _film(tmp_path, "a.png", ["model"] * 3)  # next to it: model only
    _film(tmp_path, "a.png", ["human"] * 3, sidecar_folder=folder)
    assert find_corrections([image], None, NAMES)[0] == []
    found, _ = find_corrections([image], folder, NAMES)
    assert found[0].sidecar == folder / "a.png.nfdp.json"


def test_read_corrections_reads_images_and_notes_the_bad_ones(tmp_path):
    good = _film(tmp_path, "good.png", ["human"] * 3)
    resized = _film(tmp_path, "resized.png", ["human"] * 3, shape=(80, 40))
    broken = _film(tmp_path, "broken.png", ["human"] * 3)
    broken.write_bytes(b"not a png")
    found, _ = find_corrections([good, resized, broken], None, NAMES)
    seen = []
    data = read_corrections(found, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and not data.cancelled
    assert [c.image for c in data.corrections] == [good]
    assert data.images[0].shape == SHAPE and data.landmarks[0].shape == (3, 2)
    assert data.notes[0] == "skipped resized.png: its size differs from its annotation"
    assert data.notes[1].startswith("skipped broken.png: ")


def test_read_corrections_stops_when_asked(tmp_path):
    films = [_film(tmp_path, f"{i}.png", ["human"] * 3) for i in range(3)]
    found, _ = find_corrections(films, None, NAMES)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    data = read_corrections(found, should_stop=stop)
    assert data.cancelled and len(data.images) == 1
