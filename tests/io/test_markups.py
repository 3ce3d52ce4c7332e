"""3D Slicer markups out and in, checked on real files and, where the ``slicer`` extra is
installed, by loading them through Slicer's own MRML code (vtkSlicerMarkupsLogic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES, SPINE_VERTEBRAE
from napari_nfdp.io.annotations import Annotation, sidecar_path, write_annotation
from napari_nfdp.io.corrections import find_corrections, read_corrections
from napari_nfdp.io.films import FilmShelf
from napari_nfdp.io.images import read_image, write_image
from napari_nfdp.io.markups import (
    FORMAT_KEY,
    FilmFrame,
    film_frame,
    find_markups,
    markups_path,
    read_markups,
    write_markups,
)
from napari_nfdp.simulator import synthesize_spine

K = len(SPINE_LANDMARK_NAMES)
SHAPE = (600, 260)
SPACING = (0.2, 0.15)
# an AP film in a patient frame: columns run to the patient's left, rows inferior; tilted
_TILT, _ROLL = np.radians(11.5), np.radians(8.0)
_ALONG_ROW = np.array([np.cos(_TILT), 0.0, np.sin(_TILT)])
_DOWN = np.array([0.0, -np.sin(_ROLL), -np.cos(_ROLL)])
_DOWN = _DOWN - (_DOWN @ _ALONG_ROW) * _ALONG_ROW
OBLIQUE = FilmFrame.from_info(
    {
        "spacing": SPACING,
        "image_position": (-120.0, 35.5, 410.0),
        "image_orientation": (*_ALONG_ROW, *(_DOWN / np.linalg.norm(_DOWN))),
    }
)
assert OBLIQUE.position != (0.0, 0.0, 0.0)  # the orientation was accepted


def _annotation(hidden=(5,), human=(3, 5), seed=7) -> Annotation:
    points = synthesize_spine(seed, shape=SHAPE).landmarks.copy()
    points[list(hidden)] = np.nan
    source = ["human" if i in human else "model" for i in range(K)]
    return Annotation("film.png", SHAPE, SPINE_LANDMARK_NAMES, points, source, spacing=SPACING)


def _document(path: Path) -> dict:
    return json.loads(path.read_text())


def test_round_trip_keeps_points_sources_and_hidden(tmp_path):
    ann = _annotation(hidden=(5, 40), human=(3, 5, 12))
    path = write_markups(tmp_path / "film.mrk.json", ann, frame=OBLIQUE)
    back = read_markups(path)
    assert back.names == SPINE_LANDMARK_NAMES and back.source == ann.source
    np.testing.assert_array_equal(np.isnan(back.points), np.isnan(ann.points))
    np.testing.assert_allclose(back.points, ann.points, atol=1e-4)  # positions kept to 1 nm
    assert back.frame == OBLIQUE and back.image_shape == SHAPE and back.image_name == "film.png"
    again = back.annotation("film.png", SHAPE)
    assert again.spacing == SPACING and again.source == ann.source and back.notes == []


def test_hidden_points_are_undefined_and_sources_described(tmp_path):
    path = write_markups(tmp_path / "f.mrk.json", _annotation(hidden=(5, 9), human=(5, 7)))
    document = _document(path)
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    points = document["markups"][0]
    assert points["type"] == "Fiducial" and points["coordinateSystem"] == "LPS"
    assert points["coordinateUnits"] == "mm" and len(points["controlPoints"]) == K
    by_label = {p["label"]: p for p in points["controlPoints"]}
    hidden = [SPINE_LANDMARK_NAMES[i] for i in (5, 9)]
    for name, point in by_label.items():
        if name in hidden:
            assert point["positionStatus"] == "undefined" and "position" not in point
        else:
            assert point["positionStatus"] == "defined" and len(point["position"]) == 3
    assert by_label[SPINE_LANDMARK_NAMES[7]]["description"] == "source: human"
    assert by_label[SPINE_LANDMARK_NAMES[5]]["description"] == "source: human"
    assert by_label[SPINE_LANDMARK_NAMES[9]]["description"] == "source: model"
    assert by_label["T1-top-left"]["description"].startswith("source: model; placed at row ")


def test_coordinates_are_lps_millimetres():
    pixel = np.array([[10.0, 20.0]])
    np.testing.assert_allclose(FilmFrame().to_lps(pixel), [[20.0, 10.0, 0.0]])  # 1 mm pixels
    np.testing.assert_allclose(FilmFrame((0.2, 0.15)).to_lps(pixel), [[3.0, 2.0, 0.0]])
    frame = FilmFrame.from_info(
        {
            "spacing": (0.2, 0.25),
            "image_position": (-100.0, 20.0, 300.0),
            "image_orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),  # rows run inferior
        }
    )
    expected = np.array([-100.0, 20.0, 300.0]) + 20 * 0.25 * np.array([1, 0, 0])
    expected += 10 * 0.2 * np.array([0, 0, -1])
    np.testing.assert_allclose(frame.to_lps(pixel), [expected])
    back, off_plane = frame.to_pixels(frame.to_lps(pixel) + [0.0, 3.0, 0.0])
    np.testing.assert_allclose(back, pixel)
    np.testing.assert_allclose(off_plane, [3.0])


def test_malformed_geometry_falls_back_to_identity(caplog):
    frame = FilmFrame.from_info(
        {"spacing": (0.5, 0.5), "image_position": (1, 2, 3), "image_orientation": (1, 0, 0) * 2}
    )
    assert frame == FilmFrame((0.5, 0.5)) and "orientation" in caplog.text


def test_dicom_position_and_orientation_reach_the_frame(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    ds.PixelSpacing = [0.2, 0.25]
    ds.ImagePositionPatient = [-100.0, 20.0, 300.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    path = tmp_path / "film.dcm"
    ds.save_as(path)
    _, info = read_image(path)
    assert info["image_position"] == (-100.0, 20.0, 300.0)
    assert info["image_orientation"] == (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    frame = film_frame(path)  # from the header alone
    assert frame == FilmFrame.from_info(info) and frame.spacing == (0.2, 0.25)
    assert frame.position == (-100.0, 20.0, 300.0)
    assert film_frame(tmp_path / "none.png", (0.3, 0.3)) == FilmFrame((0.3, 0.3))


def test_a_file_slicer_saved_again_uses_the_film_frame(tmp_path):
    ann = _annotation()
    path = write_markups(tmp_path / "film.mrk.json", ann, frame=OBLIQUE)
    document = _document(path)
    del document[FORMAT_KEY]  # Slicer keeps only its own keys
    path.write_text(json.dumps(document))
    back = read_markups(path, frame=OBLIQUE)
    np.testing.assert_allclose(back.points, ann.points, atol=1e-4)
    assert back.image_shape is None and back.source == ann.source
    identity = read_markups(path)  # no frame known: the file's millimetres at 1 mm per pixel
    assert not np.allclose(identity.points[0], ann.points[0])
    assert any("off the film's plane" in note for note in identity.notes)


def test_points_placed_or_moved_in_slicer_are_human(tmp_path):
    path = write_markups(tmp_path / "film.mrk.json", _annotation(hidden=(5, 9), human=()))
    document = _document(path)
    points = document["markups"][0]["controlPoints"]
    points[0]["position"][0] += 2.0  # moved in Slicer: the description still says model
    points[1]["description"] = ""  # placed in Slicer from scratch
    points[2]["positionStatus"] = "undefined"  # a person unset a model point
    points[9]["position"] = [10.0, 20.0, 0.0]  # a person placed a point the model hid
    points[9]["positionStatus"] = "defined"
    path.write_text(json.dumps(document))
    back = read_markups(path)
    assert back.source[:3] == ["human", "human", "human"] and back.source[9] == "human"
    assert back.source[5] == "model" and np.isnan(back.points[5]).all()  # the model's hidden
    assert np.isnan(back.points[2]).all()
    np.testing.assert_allclose(back.points[9], [20.0 / SPACING[0], 10.0 / SPACING[1]])
    assert set(back.source[10:]) == {"model"}


def test_labels_are_matched_by_name_in_any_order_and_frame(tmp_path):
    path = write_markups(tmp_path / "film.mrk.json", _annotation(hidden=(), human=()))
    document = _document(path)
    markup = document["markups"][0]
    markup["controlPoints"].reverse()
    markup["controlPoints"][0]["label"] = "stray point"
    markup["controlPoints"][1]["label"] = markup["controlPoints"][1]["label"].lower()
    markup["coordinateSystem"] = "RAS"  # Slicer may also save in RAS
    for point in markup["controlPoints"]:
        point["position"][:2] = [-point["position"][0], -point["position"][1]]
    path.write_text(json.dumps(document))
    back = read_markups(path)
    expected = _annotation(hidden=(), human=()).points
    np.testing.assert_allclose(back.points[:-1], expected[:-1], atol=1e-4)
    assert np.isnan(back.points[-1]).all()  # renamed away: missing, the model may fill it
    assert "stray point" in back.notes[0]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not a readable markups file"),
        ('{"markups": 3}', "no list of markups"),
        ('{"markups": [{"type": "Line", "controlPoints": []}]}', "no point list"),
        (
            '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "F-1", '
            '"position": [1, 2, 3]}]}]}',
            "named like a landmark",
        ),
        (
            '{"markups": [{"type": "Fiducial", "controlPoints": [{"label": "T1-top-left", '
            '"position": [1, "x", 3]}]}]}',
            "T1-top-left",
        ),
        ('{"markups": [{"type": "Fiducial", "coordinateSystem": "XYZ"}]}', "coordinate system"),
    ],
)
def test_bad_files_raise_a_value_error_naming_them(tmp_path, text, why):
    path = tmp_path / "bad.mrk.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=why) as error:
        read_markups(path, SPINE_LANDMARK_NAMES)
    assert "bad.mrk.json" in str(error.value)


def test_annotation_refuses_other_sizes_and_far_points(tmp_path):
    back = read_markups(write_markups(tmp_path / "a.mrk.json", _annotation()))
    with pytest.raises(ValueError, match="600 x 260"):
        back.annotation("film.png", (300, 260))
    back.image_shape = None
    with pytest.raises(ValueError, match="far outside"):
        back.annotation("film.png", (20, 10))


def _film_with_markups(folder: Path, name: str, human: tuple[int, ...], seed: int = 7) -> Path:
    case = synthesize_spine(seed, shape=SHAPE)
    image = write_image(folder / name, case.image)
    source = ["human" if i in human else "model" for i in range(K)]
    ann = Annotation(name, SHAPE, SPINE_LANDMARK_NAMES, case.landmarks, source)
    write_markups(markups_path(image), ann)
    return image


def test_a_film_with_only_markups_restores_them_as_its_landmarks(tmp_path):
    image = _film_with_markups(tmp_path, "film.png", human=tuple(range(K)))
    assert find_markups(image) == tmp_path / "film.mrk.json"
    film, restored = FilmShelf().film(str(image), image.name, SHAPE, image, None)
    assert film.session is not None and film.blocked is None and not film.dirty
    assert film.session.human_count == K
    np.testing.assert_allclose(film.session.points(), synthesize_spine(7, shape=SHAPE).landmarks)
    assert "3D Slicer markups film.mrk.json" in restored.message
    assert "film.png.nfdp.json" in restored.message
    # a sidecar, once written, wins over the markups
    points = film.session.points()
    points[0] += 5
    write_annotation(
        sidecar_path(image),
        Annotation("film.png", SHAPE, SPINE_LANDMARK_NAMES, points, ["human"] * K),
    )
    film, _ = FilmShelf().film(str(image), image.name, SHAPE, image, None)
    np.testing.assert_allclose(film.session.points()[0], points[0])


def test_unusable_markups_are_a_warning_and_block_nothing(tmp_path):
    image = _film_with_markups(tmp_path, "film.png", human=(1,))
    film, restored = FilmShelf().film(str(image), image.name, (300, 260), image, None)
    assert film.session is None and film.blocked is None
    assert restored.level == "warning" and "600 x 260" in restored.message
    markups_path(image).write_text("{")
    film, restored = FilmShelf().film("other", image.name, SHAPE, image, None)
    assert film.session is None and "could not use" in restored.message.lower()


def test_fine_tuning_finds_films_corrected_in_slicer(tmp_path):
    human = _film_with_markups(tmp_path, "a.png", human=(4, 5))
    _film_with_markups(tmp_path, "b.png", human=(), seed=8)  # model points only
    resaved = _film_with_markups(tmp_path, "c.png", human=(0,), seed=9)
    document = _document(markups_path(resaved))
    del document[FORMAT_KEY]  # as Slicer saves it: the image size is read from the image
    markups_path(resaved).write_text(json.dumps(document))
    images = [human, tmp_path / "b.png", resaved]
    found, notes = find_corrections(images, None, SPINE_LANDMARK_NAMES)
    assert [c.image for c in found] == [human, resaved] and notes == []
    assert found[0].sidecar == tmp_path / "a.mrk.json"
    read = read_corrections(found)
    assert read.notes == [] and len(read.images) == 2
    np.testing.assert_allclose(read.landmarks[1], synthesize_spine(9, shape=SHAPE).landmarks)


# -- verified by 3D Slicer's own code -----------------------------------------------------------


def _slicer_load(path: Path) -> dict:
    """The markups nodes Slicer's markups logic makes of a file, by name."""
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    selection = slicer.vtkMRMLSelectionNode()
    selection.SetSingletonTag("Singleton")  # measurements look their units up here
    scene.AddNode(selection)
    logic = slicer.vtkSlicerMarkupsLogic()
    logic.SetMRMLScene(scene)
    assert logic.LoadMarkups(str(path)), f"Slicer could not load {path}"
    nodes = scene.GetNodesByClass("vtkMRMLMarkupsNode")
    found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    return {"_scene": scene, "_logic": logic} | {node.GetName(): node for node in found}


def _lps(node, index: int) -> np.ndarray:
    ras = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(index, ras)  # Slicer keeps RAS in memory
    return np.array([-ras[0], -ras[1], ras[2]])


@pytest.mark.parametrize(
    ("hidden", "frame"),
    [((5,), OBLIQUE), ((0, 40), FilmFrame(SPACING)), ((), FilmFrame())],
    ids=["oblique-dicom-frame", "spacing-only", "pixels"],
)
def test_slicer_reads_points_and_measures_our_cobb_angles(tmp_path, hidden, frame):
    ann = _annotation(hidden=hidden, human=(3,))
    path = write_markups(tmp_path / "film.mrk.json", ann, frame=frame)
    nodes = _slicer_load(path)
    points = nodes["film landmarks"]
    assert points.IsA("vtkMRMLMarkupsFiducialNode") and points.GetNumberOfControlPoints() == K
    expected = frame.to_lps(np.nan_to_num(ann.points))
    for i, name in enumerate(SPINE_LANDMARK_NAMES):
        assert points.GetNthControlPointLabel(i) == name
        defined = points.GetNthControlPointPositionStatus(i) == points.PositionDefined
        assert defined == (i not in hidden)
        if defined:
            np.testing.assert_allclose(_lps(points, i), expected[i], atol=1e-5)
    assert points.GetNthControlPointDescription(3) == "source: human"
    result = cobb_angles(ann.points, SHAPE[0], frame.spacing)
    measured = [curve for curve in result.curves if curve.measured]
    assert measured
    angles = [node for node in nodes.values() if node.IsA("vtkMRMLMarkupsAngleNode")]
    assert len(angles) == len(measured)
    scale = np.asarray(frame.spacing or (1.0, 1.0))
    for curve in measured:
        angle = nodes[f"{curve.name} {curve.span}"]
        assert angle.GetAngleDegrees() == pytest.approx(curve.angle, abs=0.01)
        for vertebra, (left, right) in zip(
            (curve.upper, curve.lower), np.asarray(curve.lines), strict=True
        ):
            line = nodes[f"{curve.name} {SPINE_VERTEBRAE[vertebra]}"]
            length = float(np.hypot(*((right - left) * scale)))
            assert line.GetLineLengthWorld() == pytest.approx(length, rel=1e-6)


def test_points_corrected_and_saved_in_slicer_read_back(tmp_path):
    slicer = pytest.importorskip("slicer")
    ann = _annotation(hidden=(9,), human=())
    path = write_markups(tmp_path / "film.mrk.json", ann, frame=OBLIQUE)
    nodes = _slicer_load(path)
    points = nodes["film landmarks"]
    moved = OBLIQUE.to_lps(ann.points[10] + [3.0, -2.0])[0]
    points.SetNthControlPointPosition(10, -moved[0], -moved[1], moved[2])  # RAS
    points.UnsetNthControlPointPosition(20)
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    nodes["_scene"].AddNode(storage)
    storage.SetFileName(str(tmp_path / "saved.mrk.json"))
    assert storage.WriteData(points)
    back = read_markups(tmp_path / "saved.mrk.json", frame=OBLIQUE)
    np.testing.assert_allclose(back.points[10], ann.points[10] + [3.0, -2.0], atol=1e-6)
    assert back.source[10] == "human" and back.source[20] == "human"
    assert np.isnan(back.points[20]).all() and np.isnan(back.points[9]).all()
    assert back.source[9] == "model"
    untouched = [i for i in range(K) if i not in (9, 10, 20)]
    np.testing.assert_allclose(back.points[untouched], ann.points[untouched], atol=1e-4)
    assert {back.source[i] for i in untouched} == {"model"}
