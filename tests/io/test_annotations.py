"""Sidecar annotations: round trip, NaN as null, atomic writes, validation, CSV export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_nfdp.io import annotations
from napari_nfdp.io.annotations import (
    Annotation,
    annotation_to_dict,
    export_landmarks_csv,
    read_annotation,
    read_landmarks_csv,
    sidecar_path,
    write_annotation,
)


def _annotation(k: int = 3) -> Annotation:
    points = np.arange(2 * k, dtype=float).reshape(k, 2) * 10.5
    points[1] = np.nan
    return Annotation(
        image_name="film.png",
        image_shape=(400, 200),
        landmark_names=tuple(f"P{i}" for i in range(k)),
        points=points,
        source=["model", "human", "human"][:k],
        sigma=np.full((k, 2), 1.5),
        spacing=(0.14, 0.14),
        model="spine-v1",
    )


def test_sidecar_path(tmp_path):
    assert sidecar_path(tmp_path / "a.png") == tmp_path / "a.png.nfdp.json"
    assert (
        sidecar_path(tmp_path / "a.png", tmp_path / "ann") == tmp_path / "ann" / "a.png.nfdp.json"
    )


def test_round_trip_with_nan_as_null(tmp_path):
    ann = _annotation()
    path = write_annotation(sidecar_path(tmp_path / "film.png"), ann)
    data = json.loads(path.read_text())
    assert data["format"] == "napari-nfdp-annotation" and data["version"] == 1
    assert data["points"][1] == [None, None]
    back = read_annotation(path)
    np.testing.assert_array_equal(back.points, ann.points)  # NaN positions equal too
    np.testing.assert_array_equal(back.sigma, ann.sigma)
    assert back.landmark_names == ann.landmark_names
    assert back.source == ann.source and back.spacing == ann.spacing
    assert back.image_shape == (400, 200) and back.model == "spine-v1"
    assert back.updated == ann.updated


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "film.png.nfdp.json"
    write_annotation(path, _annotation())
    before = path.read_bytes()

    def broken_dump(obj, fh, **kwargs):
        fh.write('{"format": "napari-nfdp-annotation", "points": [')
        raise TypeError("cannot serialise")

    monkeypatch.setattr(annotations.json, "dump", broken_dump)
    changed = _annotation()
    changed.points[0] = (1.0, 2.0)
    with pytest.raises(TypeError, match="cannot serialise"):
        write_annotation(path, changed)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="something-else"), "not a napari-nfdp annotation"),
        (lambda d: d.update(version=2), "unsupported annotation version"),
        (lambda d: d.update(points=[[1.0, 2.0]]), r"shape \(3, 2\)"),
        (lambda d: d.pop("landmark_names"), "missing field"),
        (lambda d: d.update(source=["model", "robot", "human"]), "unknown point source"),
        (lambda d: d.update(image_shape=[0, 10]), "image_shape"),
        (lambda d: d.update(points=[["a", 1], [None, None], [1, 2]]), "numbers"),
    ],
)
def test_invalid_files_raise_value_error(tmp_path, edit, message):
    path = write_annotation(tmp_path / "x.nfdp.json", _annotation())
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        read_annotation(path)
    assert "x.nfdp.json" in str(info.value)


def test_not_json_raises_value_error(tmp_path):
    path = tmp_path / "bad.nfdp.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.nfdp.json"):
        read_annotation(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        read_annotation(path)


def test_export_csv(tmp_path):
    ann = _annotation()
    other = _annotation()
    other.image_name = "other.png"
    path = export_landmarks_csv(tmp_path / "landmarks.csv", [ann, other])
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [
        "image", "landmark", "row", "col", "row_mm", "col_mm",
        "sigma_row", "sigma_col", "visible", "source", "model",
    ]  # fmt: skip
    assert len(rows) == 1 + 6
    assert rows[1] == [
        "film.png", "P0", "0.000", "10.500", "0.0000", "1.4700",
        "1.500", "1.500", "1", "model", "spine-v1",
    ]  # fmt: skip
    assert rows[2] == ["film.png", "P1", "", "", "", "", "1.500", "1.500", "0", "human", "spine-v1"]
    assert rows[4][0] == "other.png"
    other.spacing = None
    path = export_landmarks_csv(tmp_path / "no_spacing.csv", [other])
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][2:6] == ["0.000", "10.500", "", ""]  # no spacing: no mm


def test_hostile_sidecars_raise_value_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.nfdp.json"
    good = annotation_to_dict(_annotation())
    cases = {
        "deep": "[" * 50_000 + "]" * 50_000,
        "huge number": json.dumps({**good, "image_shape": [10**400, 5]}),
        "huge point": json.dumps({**good, "points": [[1e308, 0.0], [None, None], [1.0, 2.0]]}),
        "negative sigma": json.dumps({**good, "sigma": [[-1.0, 1.0]] * 3}),
        "shape as text": json.dumps({**good, "image_shape": "tall"}),
        "names as dict": json.dumps({**good, "landmark_names": {"a": 1}}),
    }
    for what, text in cases.items():
        path.write_text(text)
        with pytest.raises(ValueError, match="bad.nfdp.json") as info:
            read_annotation(path)
        assert type(info.value) is ValueError, what


def test_read_only_sidecar_is_not_replaced(tmp_path):
    from napari_nfdp.core.atomic import ReadOnlyFileError

    path = write_annotation(tmp_path / "film.png.nfdp.json", _annotation())
    path.chmod(0o444)
    before = path.read_bytes()
    with pytest.raises(ReadOnlyFileError, match="read-only"):
        write_annotation(path, _annotation())
    assert path.read_bytes() == before


def test_landmark_table_reads_back_what_export_wrote(tmp_path):
    ann = _annotation()
    other = _annotation()
    other.image_name, other.spacing, other.sigma, other.model = "other.png", None, None, None
    path = export_landmarks_csv(tmp_path / "landmarks.nfdp.csv", [ann, other])
    back, back_other = read_landmarks_csv(path)
    assert back.image_name == "film.png" and back_other.image_name == "other.png"
    np.testing.assert_allclose(back.points, ann.points, atol=1e-3)  # NaN: not visible
    np.testing.assert_allclose(back.sigma, ann.sigma)
    assert back.landmark_names == ann.landmark_names and back.source == ann.source
    assert back.spacing == pytest.approx(ann.spacing, rel=1e-3) and back.model == "spine-v1"
    assert back.image_shape == (43, 54)  # the extent of the points: no size in a table
    assert back_other.spacing is None and back_other.sigma is None and back_other.model is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n", "not a landmark table"),
        ("image,landmark,row,col\nf.png,P1,x,2\n", "must be numbers"),
        ("image,landmark,row,col,source\nf.png,P1,1,2,robot\n", "unknown point source"),
        ("image,landmark,row,col\nf.png,P1,inf,2\n", "infinite"),
    ],
)
def test_bad_landmark_tables_raise_value_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.nfdp.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_landmarks_csv(path)
    assert str(info.value).startswith("bad.nfdp.csv: ")
