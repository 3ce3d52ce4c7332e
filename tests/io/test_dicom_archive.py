"""The DICOM that archives hold: JPEG Lossless, JPEG-LS and 12-bit JPEG Extended pixel data,
files without an extension, DICOMDIR, and where the pixel spacing came from.

Real films: the CR radiographs of pydicom-data, transcoded here by GDCM into each syntax (and
checked against the uncompressed original), and pydicom's own compressed test files (checked
against their uncompressed twins or against what an independent decoder, libjpeg, gives).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import gdcm
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from pydicom.pixels import pixel_array
from pydicom.uid import UID, generate_uid

from napari_nfdp._reader import get_reader
from napari_nfdp.cli import main
from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH
from napari_nfdp.io import dicom_codecs
from napari_nfdp.io.annotations import (
    Annotation,
    annotation_to_dict,
    read_annotation,
    write_annotation,
)
from napari_nfdp.io.dicom import (
    SPACING_FROM_IMAGER,
    SPACING_FROM_IMAGER_MAGNIFIED,
    SPACING_FROM_PIXEL_SPACING,
    SPACING_FROM_SCANNED,
    read_dicom,
    spacing_and_source,
)
from napari_nfdp.io.images import (
    ImageReadError,
    is_image_file,
    list_images,
    read_image,
    write_image,
)
from napari_nfdp.io.report import REPORT_COLUMNS, annotation_report_row, report_row

CHEST, ANKLE = "RG1_UNCR.dcm", "RG3_UNCR.dcm"  # CR films, 1955 x 1841 (15 bit), 1760 x 1760
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
NEAR = 3  # the largest error the near-lossless film may have
# sha256 of the pixels libjpeg 2.5 (pylibjpeg-libjpeg) decodes from these files, as int32
INDEPENDENT_DIGESTS = {
    "JPEG-LL.dcm": "b364d556a70a0ed9",  # JPEG Lossless SV1, 16-bit
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "566b6fa1cbffda6c",  # JPEG Lossless SV1, 8-bit
    "JPEGLSNearLossless_16.dcm": "1d1ea445c998e392",
    "JPEGLSNearLossless_08.dcm": "832dd54ff071afd5",
}
# JPGExtended.dcm (12-bit JPEG Extended), row 500, columns 96..111, as libjpeg decodes it;
# lossy decoders may differ by one (the inverse DCT is not exactly specified).
EXTENDED_ROW_500 = [16, 20, 26, 30, 31, 28, 24, 21, 24, 24, 23, 22, 22, 21, 21, 21]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<i4").tobytes()).hexdigest()[:16]


def _transcode(source: str, target: Path, syntax: str, near: int = 0) -> Path:
    """Write ``source`` again with GDCM in another transfer syntax (lossless, or JPEG-LS
    near-lossless with the error bound ``near``). GDCM's codestreams for the chest film were
    checked once with libjpeg, an independent decoder: the same pixels (within ``near``)."""
    reader = gdcm.ImageReader()
    reader.SetFileName(source)
    assert reader.Read(), source
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    if near:
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(near)
        change.SetUserCodec(codec)
    change.SetInput(reader.GetImage())
    assert change.Change(), syntax
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(target))
    assert writer.Write(), target
    return target


@pytest.fixture(scope="module")
def chest() -> tuple[np.ndarray, np.ndarray]:
    """The chest film: its stored pixels and its display array."""
    path = get_testdata_file(CHEST)
    return pydicom.dcmread(path).pixel_array, read_dicom(path)[0]


@pytest.fixture(scope="module")
def chest_in(tmp_path_factory):
    """The chest film transcoded by GDCM into each syntax, as files without an extension."""
    folder = tmp_path_factory.mktemp("archive")
    made: dict[str, Path] = {}

    def get(syntax: str) -> Path:
        if syntax not in made:
            near = NEAR if syntax == JPEG_LS_NEAR else 0
            name = "IM" + syntax.rsplit(".", 1)[-1]
            made[syntax] = _transcode(get_testdata_file(CHEST), folder / name, syntax, near)
        return made[syntax]

    return get


@pytest.mark.parametrize("syntax", [JPEG_LOSSLESS, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS])
def test_lossless_syntaxes_decode_a_cr_film_exactly(syntax, chest, chest_in):
    path = chest_in(syntax)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    stored, display = chest
    np.testing.assert_array_equal(pixel_array(path, decoding_plugin="gdcm"), stored)
    image, meta = read_dicom(path)
    np.testing.assert_array_equal(image, display)
    assert meta["photometric_interpretation"] == "MONOCHROME1"


def test_near_lossless_jpeg_ls_stays_within_its_bound(chest, chest_in):
    path = chest_in(JPEG_LS_NEAR)
    stored, display = chest
    decoded = pixel_array(path, decoding_plugin="gdcm").astype(np.int64)
    error = np.abs(decoded - stored)
    assert error.max() == NEAR and error.mean() > 0.5  # lossy, but never beyond NEAR
    image, _ = read_dicom(path)
    assert image.shape == display.shape
    assert np.abs(image - display).max() <= 2 * NEAR  # the inversion adds max + min


@pytest.mark.parametrize(
    ("name", "twin"),
    [
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless, signed 16-bit
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm"),  # JPEG Lossless SV1, RGB
    ],
)
def test_pydicom_files_decode_like_their_uncompressed_twins(name, twin):
    decoded = read_dicom(get_testdata_file(name))[0]
    np.testing.assert_array_equal(decoded, read_dicom(get_testdata_file(twin))[0])


@pytest.mark.parametrize("name", sorted(INDEPENDENT_DIGESTS))
def test_gdcm_decodes_what_an_independent_decoder_does(name):
    decoded = pixel_array(get_testdata_file(name), decoding_plugin="gdcm")
    assert _digest(decoded) == INDEPENDENT_DIGESTS[name]
    read_dicom(get_testdata_file(name))  # and the reader's checks let it through


def test_12_bit_jpeg_extended_decodes():
    """pydicom's GDCM plugin declines 12-bit JPEG Extended; ours decodes it like libjpeg, and
    like the lossless twin of the same NM image up to the compression error."""
    path = get_testdata_file("JPGExtended.dcm")
    decoded = pixel_array(path, decoding_plugin=dicom_codecs.PLUGIN_LABEL).astype(np.int64)
    assert decoded.shape == (1024, 256)
    np.testing.assert_allclose(decoded[500, 96:112], EXTENDED_ROW_500, atol=1)
    lossless = pixel_array(get_testdata_file("JPEG-LL.dcm")).astype(np.int64)
    assert np.abs(decoded - lossless).mean() < 0.01 * np.ptp(lossless)
    image, _ = read_dicom(path)
    np.testing.assert_array_equal(image, decoded.astype(np.float32))


@pytest.mark.parametrize(
    ("syntax", "marker"), [(JPEG_LOSSLESS_SV1, b"\xff\xc3"), (JPEG_LS_LOSSLESS, b"\xff\xf7")]
)
def test_frame_header_size_is_checked_for_lossless_jpeg_and_jpeg_ls(
    syntax, marker, chest_in, tmp_path
):
    """The SOF3 / SOF55 frame header of these syntaxes is read before decoding: one declaring
    65535 x 65535 is refused from it, whatever Rows and Columns say."""
    data = bytearray(chest_in(syntax).read_bytes())
    sof = data.index(marker)
    assert data[sof + 5 : sof + 9] == (1955).to_bytes(2, "big") + (1841).to_bytes(2, "big")
    data[sof + 5 : sof + 9] = b"\xff\xff\xff\xff"
    path = tmp_path / "IMBOMB"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"IMBOMB: .*65535 x 65535 .*JPEG header"):
        read_dicom(path)


def test_an_unknown_syntax_is_named_with_the_file(tmp_path):
    ds = pydicom.dcmread(get_testdata_file(ANKLE))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2: no decoder
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(60)])
    path = tmp_path / "mpeg2.dcm"
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"mpeg2.dcm: .*MPEG2 Main Profile.*4\.100"):
        read_dicom(path)


def test_without_gdcm_the_error_names_the_file_and_the_syntax(chest_in):
    """A Python without python-gdcm (blocked from importing here) says which file, which
    syntax, and what is missing."""
    path = chest_in(JPEG_LOSSLESS_SV1)
    script = (
        "import sys\n"
        "sys.modules['gdcm'] = None\n"
        "from napari_nfdp.io.dicom import read_dicom\n"
        "try:\n"
        f"    read_dicom({str(path)!r})\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    message = result.stdout.strip()
    assert message.startswith(f"{path.name}: no installed decoder reads its transfer syntax")
    assert "Selection Value 1" in message and JPEG_LOSSLESS_SV1 in message and "gdcm" in message


# -- files without an extension, DICOMDIR -----------------------------------------------------


@pytest.fixture
def ankle_copy(tmp_path) -> Path:
    """The ankle CR film as a PACS export names it: no extension."""
    path = tmp_path / "I0000001"
    shutil.copyfile(get_testdata_file(ANKLE), path)
    return path


def test_film_without_extension_is_listed_and_offered(ankle_copy):
    assert is_image_file(ankle_copy) and list_images(ankle_copy.parent) == [ankle_copy]
    reader = get_reader(str(ankle_copy))
    assert callable(reader)
    ((data, kwargs, kind),) = reader(str(ankle_copy))
    assert kind == "image" and data.shape == (1760, 1760) and kwargs["name"] == "I0000001"
    assert kwargs["metadata"]["format"] == "DICOM"


def test_files_without_extension_that_are_not_dicom_are_not_claimed(tmp_path):
    (tmp_path / "README").write_text("notes about the study\n" * 20)
    write_image(tmp_path / "scan.png", np.zeros((64, 64), np.uint8)).rename(tmp_path / "SCAN1")
    (tmp_path / "LATE").write_bytes(b"\0" * 200 + b"DICM" + b"\0" * 200)  # DICM misplaced
    (tmp_path / "EMPTY").write_bytes(b"")
    for name in ("README", "SCAN1", "LATE", "EMPTY"):
        assert get_reader(str(tmp_path / name)) is None, name
    assert list_images(tmp_path) == []
    assert get_reader(str(tmp_path)) is None


def _film(uid: str) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file(ANKLE))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.PatientID = ds.get("PatientID") or "anonymous"
    return ds


def test_folder_with_a_dicomdir_lists_only_the_films(tmp_path):
    """pydicom's FileSet writes a DICOM medium: DICOMDIR at the root, films without an
    extension below. The DICOMDIR is neither listed, nor offered, nor an image; a copy of it
    among the films under another name is recognised by its Media Storage SOP Class."""
    medium = tmp_path / "cd"
    files = FileSet()
    for _ in range(2):
        files.add(_film(generate_uid()))
    files.write(medium)
    dicomdir = medium / "DICOMDIR"
    assert pydicom.dcmread(dicomdir).file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    assert list_images(medium) == [] and get_reader(str(medium)) is None
    assert get_reader(str(dicomdir)) is None
    series = next(p.parent for p in medium.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    films = sorted(p for p in series.iterdir())
    assert len(films) == 2 and all(not p.suffix for p in films)
    shutil.copyfile(dicomdir, series / "DICOMDIR")
    shutil.copyfile(dicomdir, series / "INDEX")  # a DICOMDIR under another name
    assert list_images(series) == films
    for name in ("DICOMDIR", "INDEX"):
        assert not is_image_file(series / name) and get_reader(str(series / name)) is None
    ((_, kwargs, _),) = get_reader(str(series))(str(series))
    assert kwargs["metadata"]["nfdp_files"] == [str(p) for p in films]
    with pytest.raises(ImageReadError, match="INDEX is a DICOMDIR"):
        read_image(series / "INDEX")


# -- where the spacing came from --------------------------------------------------------------


@pytest.mark.parametrize(
    ("elements", "spacing", "source"),
    [
        ({"PixelSpacing": [0.143, 0.15], "ImagerPixelSpacing": [0.2, 0.2]}, (0.143, 0.15),
         SPACING_FROM_PIXEL_SPACING),
        ({"ImagerPixelSpacing": [0.2, 0.25], "EstimatedRadiographicMagnificationFactor": 1.25},
         (0.16, 0.2), SPACING_FROM_IMAGER_MAGNIFIED),
        ({"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.2, 0.25]}, (0.2, 0.25),
         SPACING_FROM_IMAGER),
        ({"ImagerPixelSpacing": [0.2, 0.2], "EstimatedRadiographicMagnificationFactor": 0},
         (0.2, 0.2), SPACING_FROM_IMAGER),
        ({"NominalScannedPixelSpacing": [0.1, 0.1]}, (0.1, 0.1), SPACING_FROM_SCANNED),
        ({}, None, None),
    ],
)  # fmt: skip
def test_spacing_source_rule(elements, spacing, source):
    ds = pydicom.Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    found, where = spacing_and_source(ds)
    assert where == source
    assert found == (pytest.approx(spacing) if spacing else None)


def test_reader_reports_the_spacing_source(ankle_copy):
    ds = pydicom.dcmread(ankle_copy)
    ds.ImagerPixelSpacing = [0.2, 0.25]
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    ds.save_as(ankle_copy)
    ((_, kwargs, _),) = get_reader(str(ankle_copy))(str(ankle_copy))
    meta = kwargs["metadata"]
    assert meta["spacing"] == pytest.approx((0.16, 0.2))
    assert meta["spacing_source"] == SPACING_FROM_IMAGER_MAGNIFIED
    chest_meta = read_dicom(get_testdata_file(CHEST))[1]  # PixelSpacing 0\0: none
    assert chest_meta["spacing"] is None and chest_meta["spacing_source"] is None
    assert read_dicom(get_testdata_file("JPEG-LL.dcm"))[1]["spacing_source"] == "PixelSpacing"


def _annotation(spacing_source: str | None) -> Annotation:
    names = ("T1-top-left", "T1-top-right")
    return Annotation(
        image_name="IM0001",
        image_shape=(400, 200),
        landmark_names=names,
        points=np.array([[10.0, 20.0], [11.0, 40.0]]),
        source=["model", "human"],
        spacing=(0.16, 0.2),
        spacing_source=spacing_source,
    )


def test_sidecar_keeps_the_spacing_source_and_old_sidecars_still_read(tmp_path):
    path = write_annotation(tmp_path / "IM0001.nfdp.json", _annotation(SPACING_FROM_IMAGER))
    assert read_annotation(path).spacing_source == SPACING_FROM_IMAGER
    old = annotation_to_dict(_annotation(None))
    del old["spacing_source"]  # as written before the field existed
    path.write_text(json.dumps(old))
    back = read_annotation(path)
    assert back.spacing_source is None and back.spacing == (0.16, 0.2)


def test_report_has_the_spacing_source_column():
    column = REPORT_COLUMNS.index("spacing_source")
    assert REPORT_COLUMNS[column - 2 : column] == ("spacing_row_mm", "spacing_col_mm")
    row = report_row("f", "ok", None, spacing=(0.16, 0.2), model="v1", spacing_source="X")
    assert len(row) == len(REPORT_COLUMNS) and row[column] == "X"
    assert report_row("f", "ok", None, spacing=None, model=None)[column] == ""
    saved = annotation_report_row("IM0001", _annotation(SPACING_FROM_IMAGER_MAGNIFIED))
    assert saved[column] == SPACING_FROM_IMAGER_MAGNIFIED


def test_detect_csv_has_the_spacing_source(ankle_copy, tmp_path):
    ds = pydicom.dcmread(ankle_copy)
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.EstimatedRadiographicMagnificationFactor = 1.1
    ds.save_as(ankle_copy)
    out = tmp_path / "results.csv"
    args = ["detect", str(ankle_copy.parent), "--out", str(out), "--device", "cpu"]
    main([*args, "--checkpoint", str(DEFAULT_MODEL_PATH)])
    (row,) = csv.DictReader(out.open())
    assert row["image"] == str(ankle_copy)
    assert row["spacing_source"] == SPACING_FROM_IMAGER_MAGNIFIED
    assert float(row["spacing_row_mm"]) == pytest.approx(0.2 / 1.1, rel=1e-5)
