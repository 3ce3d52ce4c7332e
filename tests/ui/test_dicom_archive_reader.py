"""Archive DICOM in napari: a film without an extension opens through napari's own reader
lookup, and the dock shows and exports where the pixel spacing came from."""

from __future__ import annotations

import csv
import json
import shutil

import npe2
import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_nfdp.io.annotations import sidecar_path
from napari_nfdp.io.dicom import SPACING_FROM_IMAGER_MAGNIFIED
from napari_nfdp.simulator import synthesize_spine
from tests.conftest import SMALL_SHAPE
from tests.ui.conftest import detect_and_wait, open_and_wait


def _readers(path) -> list[str]:
    return [r.command for r in npe2.PluginManager.instance().iter_compatible_readers([path])]


def test_film_without_extension_opens_in_a_plain_viewer(make_napari_viewer, tmp_path):
    film = tmp_path / "IM0001"
    shutil.copyfile(get_testdata_file("RG3_UNCR.dcm"), film)
    viewer = make_napari_viewer()
    assert _readers(str(film)) == ["napari-nfdp.get_reader"]  # ours alone: no reader dialog
    (layer,) = viewer.open(str(film), plugin=None)  # napari looks the reader up itself
    assert layer.name == "IM0001" and layer.data.shape == (1760, 1760)
    assert layer.metadata["format"] == "DICOM"
    notes = tmp_path / "NOTES"
    notes.write_text("not a film")
    with pytest.raises(ValueError, match="NOTES"):
        viewer.open(str(notes), plugin=None)
    assert len(viewer.layers) == 1


def test_dock_shows_and_exports_the_spacing_source(widget, qtbot, tmp_path):
    case = synthesize_spine(101, shape=SMALL_SHAPE)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / "IM0001"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.PhotometricInterpretation = "DX", "MONOCHROME2"
    ds.Rows, ds.Columns = SMALL_SHAPE
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    ds.PixelRepresentation = 0
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    ds.PixelData = case.image.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)

    open_and_wait(qtbot, widget, path)
    assert widget.spacing_label.text() == f"0.4 × 0.4 mm/pixel ({SPACING_FROM_IMAGER_MAGNIFIED})"
    assert tuple(widget.image_layer.scale) == pytest.approx((0.4, 0.4))
    detect_and_wait(qtbot, widget)
    assert widget.save() is not None
    saved = json.loads(sidecar_path(path).read_text())
    assert saved["spacing_source"] == SPACING_FROM_IMAGER_MAGNIFIED
    (row,) = csv.DictReader(widget.export_cobb_report(tmp_path / "report.csv").open())
    assert row["image"] == "IM0001" and row["spacing_source"] == SPACING_FROM_IMAGER_MAGNIFIED
    assert row["measured_on"] == "mm" and row["spacing_row_mm"] == "0.4"
