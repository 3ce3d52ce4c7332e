"""npe2 reader and writer on real files, directly and through a real napari viewer."""

from __future__ import annotations

import csv
import importlib
import os
import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from npe2 import PluginManifest
from PIL import Image
from pydicom.data import get_testdata_file

import napari_nfdp
from napari_nfdp._reader import get_reader
from napari_nfdp._writer import write_points
from napari_nfdp.core.preprocess import ImageError
from napari_nfdp.io.images import ImageReadError, write_image

MANIFEST = Path(napari_nfdp.__file__).parent / "napari.yaml"


def _ramp(shape: tuple[int, int], top: int) -> np.ndarray:
    rows = np.linspace(0, top, shape[0])[:, None]
    cols = np.linspace(0, top // 4, shape[1])[None, :]
    return rows + cols


def _read(path: Path | str | list) -> tuple[np.ndarray, dict, str]:
    reader = get_reader(path if isinstance(path, list) else str(path))
    assert callable(reader), f"no reader for {path}"
    layers = reader(path)
    assert len(layers) == 1
    return layers[0]


def _band(image: np.ndarray, col0: float, col1: float) -> float:
    h, w = image.shape
    return float(image[h // 4 : 3 * h // 4, int(col0 * w) : int(col1 * w)].mean())


def test_16_bit_png_keeps_its_values(tmp_path):
    array = _ramp((80, 40), 60000).astype(np.uint16)
    path = write_image(tmp_path / "film16.png", array)
    data, kwargs, layer_type = _read(path)
    assert layer_type == "image"
    assert data.dtype == np.uint16 and np.array_equal(data, array)
    assert kwargs["name"] == "film16" and kwargs["scale"] == (1.0, 1.0)
    meta = kwargs["metadata"]
    assert meta["path"] == str(path) and meta["spacing"] is None and meta["modality"] is None
    assert meta["nfdp_files"] == [str(path)] and meta["nfdp_index"] == 0


def test_8_bit_jpeg_and_bmp(tmp_path):
    array = _ramp((64, 48), 200).astype(np.uint8)
    jpeg = write_image(tmp_path / "film.jpg", array)
    data, kwargs, _ = _read(jpeg)
    assert data.dtype == np.uint8 and data.shape == (64, 48)
    assert np.abs(data.astype(int) - array).mean() < 3  # lossy, but the same picture
    bmp = tmp_path / "film.bmp"
    Image.fromarray(array).save(bmp)
    data, kwargs, _ = _read(bmp)
    assert np.array_equal(data, array) and kwargs["metadata"]["format"] == "BMP"


def test_rgb_png_becomes_grey(tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[:, :25, 0] = 255  # red half
    rgb[:, 25:] = 200  # grey half
    data, _, _ = _read(write_image(tmp_path / "colour.png", rgb))
    assert data.shape == (40, 50) and data.dtype == np.uint8
    assert data[0, 0] == round(0.2125 * 255) and data[0, -1] == 200


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_tiff(tmp_path, dtype):
    array = _ramp((48, 36), 4000).astype(dtype)
    path = tmp_path / "film.tif"
    tifffile.imwrite(path, array)
    data, kwargs, _ = _read(path)
    assert data.dtype == dtype and np.array_equal(data, array)
    assert kwargs["metadata"]["format"] == "TIFF"


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_real_cr_dicom_has_bone_bright(name):
    data, kwargs, _ = _read(get_testdata_file(name))
    assert data.ndim == 2 and data.shape == (1955, 1841)
    mediastinum = _band(data, 0.45, 0.55)
    assert mediastinum > 1.2 * max(_band(data, 0.2, 0.3), _band(data, 0.7, 0.8))
    meta = kwargs["metadata"]
    assert meta["modality"] == "CR" and meta["photometric_interpretation"] == "MONOCHROME1"
    assert meta["spacing"] is None and kwargs["scale"] == (1.0, 1.0)  # RG1 stores 0\0
    assert kwargs["name"] == name.removesuffix(".dcm")


def test_dicom_spacing_becomes_the_layer_scale(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.25]
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    path = tmp_path / "IM0001"  # no suffix: recognised by the DICM preamble
    ds.save_as(path)
    data, kwargs, _ = _read(path)
    assert kwargs["scale"] == pytest.approx((0.16, 0.2))
    assert kwargs["units"] == ("mm", "mm")
    assert kwargs["metadata"]["spacing"] == pytest.approx((0.16, 0.2))


def test_folder_opens_first_image_and_lists_all(tmp_path):
    array = _ramp((40, 40), 250).astype(np.uint8)
    for name in ("film10.png", "film2.png", "Film1.jpg", ".hidden.png", "sub/film0.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        write_image(tmp_path / name, array)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "film2.png.nfdp.json").write_text("{}")
    data, kwargs, _ = _read(tmp_path)
    expected = [str(tmp_path / n) for n in ("Film1.jpg", "film2.png", "film10.png")]
    assert kwargs["metadata"]["nfdp_files"] == expected
    assert kwargs["metadata"]["nfdp_index"] == 0 and kwargs["name"] == "Film1"
    files = [str(tmp_path / "film10.png"), str(tmp_path / "film2.png")]
    assert _read(files)[1]["metadata"]["nfdp_files"] == files  # a list keeps its order


def test_single_film_steps_through_its_folder(tmp_path):
    array = _ramp((40, 40), 250).astype(np.uint8)
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name, array)
    _, kwargs, _ = _read(str(tmp_path / "b.png"))
    assert kwargs["name"] == "b"
    assert kwargs["metadata"]["nfdp_files"] == [
        str(tmp_path / n) for n in ("a.png", "b.png", "c.png")
    ]
    assert kwargs["metadata"]["nfdp_index"] == 1


def test_paths_without_images_are_not_ours(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "table.csv").write_text("a,b\n")
    assert get_reader(str(tmp_path / "empty")) is None
    assert get_reader(str(tmp_path / "table.csv")) is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_named_pipe_without_suffix_is_not_sniffed(tmp_path):
    """get_reader runs on the GUI thread: opening a pipe to sniff it would block forever."""
    fifo = tmp_path / "IM0001"
    os.mkfifo(fifo)
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.update(reader=get_reader(str(fifo))))
    thread.daemon = True
    thread.start()
    thread.join(5)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblock it, then fail
        thread.join(5)
        pytest.fail("get_reader blocked on a named pipe")
    assert outcome == {"reader": None}
    # A pipe named like an image is ours, and reading it says what it is without blocking.
    named = tmp_path / "film.dcm"
    os.mkfifo(named)
    reader = get_reader(str(named))
    assert callable(reader)
    with pytest.raises(ImageReadError, match="film.dcm: not a regular file"):
        reader(str(named))


def _png_declaring(path: Path, width: int, height: int) -> None:
    write_image(path, np.zeros((40, 40), np.uint8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_hostile_and_unanalysable_files_give_the_documented_errors(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_declaring(bomb, 100_000, 100_000)  # Pillow's DecompressionBombError before
    wide = write_image(tmp_path / "wide.png", np.zeros((32, 8000), np.uint8))
    for path, error_type, message in (
        (bomb, ImageReadError, "bomb.png: the file declares too many pixels"),
        (wide, ImageError, "wide.png: image is too elongated"),
    ):
        reader = get_reader(str(path))
        with pytest.raises(error_type, match=message):
            reader(str(path))
        assert issubclass(error_type, ValueError)


def _stack(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((5, 40, 40), np.uint16))


def _corrupt_dicom(path: Path) -> None:
    data = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("notes.png", lambda p: p.write_text("just text"), "not a readable image"),
        ("broken.dcm", _corrupt_dicom, "broken.dcm"),
        ("stack.tif", _stack, "is a stack of 5 images"),
        ("tiny.png", lambda p: write_image(p, np.zeros((20, 100), np.uint8)), "too small"),
    ],
)
def test_bad_content_raises_a_clear_value_error(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    reader = get_reader(str(path))
    assert callable(reader)
    with pytest.raises(ValueError, match=message) as info:
        reader(str(path))
    assert name in str(info.value)


def test_viewer_opens_files_and_folders(make_napari_viewer, tmp_path):
    array = _ramp((64, 32), 50000).astype(np.uint16)
    path = write_image(tmp_path / "spine.png", array)
    write_image(tmp_path / "spine2.png", array)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-nfdp")
    viewer.open(str(tmp_path), plugin="napari-nfdp")
    assert [layer.name for layer in viewer.layers] == ["spine", "spine [1]"]
    for layer in viewer.layers:
        assert layer._type_string == "image"
        assert np.array_equal(layer.data, array)
    assert len(viewer.layers[1].metadata["nfdp_files"]) == 2
    bad = tmp_path / "bad.png"
    bad.write_text("just text")
    with pytest.raises(ValueError, match="bad.png: not a readable image"):
        viewer.open(str(bad), plugin="napari-nfdp")
    assert len(viewer.layers) == 2
    (chest,) = viewer.open(get_testdata_file("RG1_UNCR.dcm"), plugin="napari-nfdp")
    assert chest.name == "RG1_UNCR" and chest.data.ndim == 2
    assert _band(chest.data, 0.45, 0.55) > 1.2 * _band(chest.data, 0.2, 0.3)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_write_points_round_trip(tmp_path):
    points = np.array([[10.5, 20.25], [30.0, 40.0], [50.0, 5.0]])
    meta = {
        "name": "landmarks",
        "metadata": {"path": str(tmp_path / "film.dcm")},
        "features": {"name": ["T1-top-left", "T1-top-right", "T1-bottom-left"]},
    }
    meta["features"]["source"] = ["model", "human", "model"]
    out = tmp_path / "points.csv"
    assert write_points(str(out), points, meta) == [str(out)]
    rows = _rows(out)
    assert [r["image"] for r in rows] == ["film.dcm"] * 3
    assert [r["landmark"] for r in rows] == meta["features"]["name"]
    assert [r["source"] for r in rows] == meta["features"]["source"]
    back = np.array([[float(r["row"]), float(r["col"])] for r in rows])
    np.testing.assert_allclose(back, points, atol=1e-3)


def test_write_points_without_features(tmp_path):
    out = tmp_path / "plain.csv"
    write_points(str(out), np.array([[1.0, 2.0], [3.0, 4.0]]), {"name": "Points"})
    rows = _rows(out)
    assert [(r["image"], r["landmark"], r["source"]) for r in rows] == [
        ("Points", "P01", "human"),
        ("Points", "P02", "human"),
    ]


def test_manifest_is_valid_and_names_these_functions():
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-nfdp"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    for contribution, function in (
        (manifest.contributions.readers[0], get_reader),
        (manifest.contributions.writers[0], write_points),
    ):
        module, _, name = commands[contribution.command].partition(":")
        assert getattr(importlib.import_module(module), name) is function
    assert manifest.contributions.readers[0].accepts_directories
