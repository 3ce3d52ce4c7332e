"""Dataset readers on tiny fixtures written in each real on-disk format."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
import scipy.io
from PIL import Image
from pydicom.data import get_testdata_file

from napari_nfdp.io.annotations import Annotation, sidecar_path, write_annotation
from napari_nfdp.io.images import write_image
from training.datasets import (
    SampleSource,
    hand_spacing,
    open_dataset,
    read_aasce,
    read_hand,
    read_isbi2015,
    read_sidecars,
    sample_from_array,
    write_aasce,
)


def _image(shape=(120, 60), seed=0, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, size=shape, dtype=dtype)


def _rc(k: int, shape=(120, 60), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform((5, 5), (shape[0] - 5, shape[1] - 5), size=(k, 2)).round(2)


# --- AASCE -----------------------------------------------------------------------------------


def test_aasce_mat_layout_reads_p2_as_xy(tmp_path):
    (tmp_path / "data" / "training").mkdir(parents=True)
    (tmp_path / "labels" / "training").mkdir(parents=True)
    expected = {}
    for i in range(2):
        name = f"sunhl-1th-{i:02d}-Mar-2017-31{i} C AP.jpg"
        Image.fromarray(_image(seed=i)).save(tmp_path / "data" / "training" / name, quality=95)
        rc = _rc(68, seed=i)
        scipy.io.savemat(tmp_path / "labels" / "training" / f"{name}.mat", {"p2": rc[:, ::-1]})
        expected[name] = rc
    sources = read_aasce(tmp_path, "training")
    assert [s.name for s in sources] == sorted(expected)
    for source in sources:
        np.testing.assert_allclose(source.landmarks, expected[source.name])
        sample = source.load()
        assert sample.image.dtype == np.float32 and sample.image.shape == (120, 60)
        assert sample.spacing is None
    assert [s.name for s in open_dataset(tmp_path, split="train")] == sorted(expected)
    with pytest.raises(FileNotFoundError, match="validation"):
        open_dataset(tmp_path, split="validation")


def test_aasce_csv_variant_is_normalised_xs_then_ys(tmp_path):
    (tmp_path / "data" / "test").mkdir(parents=True)
    labels = tmp_path / "labels" / "test"
    labels.mkdir(parents=True)
    names, rows, expected = [], [], []
    for i, shape in enumerate([(120, 60), (100, 80)]):
        name = f"case{i}.jpg"
        Image.fromarray(_image(shape, seed=i)).save(tmp_path / "data" / "test" / name)
        rc = _rc(68, shape, seed=i)
        names.append([name])
        rows.append(np.concatenate([rc[:, 1] / shape[1], rc[:, 0] / shape[0]]))
        expected.append(rc)
    with (labels / "landmarks.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with (labels / "filenames.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(names)
    sources = read_aasce(tmp_path, "test")
    assert len(sources) == 2
    for source, rc in zip(sources, expected, strict=True):
        np.testing.assert_allclose(source.landmarks, rc, atol=1e-9)


def test_aasce_missing_labels_raise(tmp_path):
    (tmp_path / "data" / "training").mkdir(parents=True)
    (tmp_path / "labels" / "training").mkdir(parents=True)
    Image.fromarray(_image()).save(tmp_path / "data" / "training" / "lonely.jpg")
    with pytest.raises(ValueError, match="lonely.jpg"):
        read_aasce(tmp_path)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_write_aasce_round_trip(tmp_path, ext):
    image = (np.linspace(1000, 40000, 120 * 60).reshape(120, 60)).astype(np.uint16)
    items = [(f"synth-{i}", image, _rc(68, seed=i)) for i in range(3)]
    paths = write_aasce(tmp_path, "training", iter(items), ext=ext)
    assert [p.name for p in paths] == [f"synth-{i}.{ext}" for i in range(3)]
    sources = open_dataset(tmp_path, "training")
    for source, (_, _, rc) in zip(sources, items, strict=True):
        np.testing.assert_allclose(source.landmarks, rc)
        pixels = np.asarray(Image.open(source.path))
        if ext == "jpg":
            assert pixels.dtype == np.uint8 and pixels.min() <= 1 and pixels.max() >= 254
        else:
            np.testing.assert_array_equal(pixels, image)
    # The CSV files written alongside describe the same landmarks.
    for mat in (tmp_path / "labels" / "training").glob("*.mat"):
        mat.unlink()
    for source, (_, _, rc) in zip(read_aasce(tmp_path), items, strict=True):
        np.testing.assert_allclose(source.landmarks, rc, atol=1e-9)


# --- ISBI 2015 -------------------------------------------------------------------------------


def _write_isbi(root, folder: str, number: int, senior: np.ndarray, junior: np.ndarray) -> None:
    image_dir = root / "RawImage" / folder
    image_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_image((96, 80), seed=number)).save(image_dir / f"{number:03d}.bmp")
    for annotator, rc in (("400_senior", senior), ("400_junior", junior)):
        ann_dir = root / "AnnotationsByMD" / annotator
        ann_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{int(x)},{int(y)}" for y, x in rc] + ["1", "2", "3"]  # class labels follow
        (ann_dir / f"{number:03d}.txt").write_text("\n".join(lines) + "\n")


def test_isbi2015_mean_of_annotators_and_splits(tmp_path):
    senior = np.round(_rc(19, (96, 80), seed=1))
    junior = senior + 2
    _write_isbi(tmp_path, "TrainingData", 1, senior, junior)
    _write_isbi(tmp_path, "Test1Data", 151, senior, junior)
    _write_isbi(tmp_path, "Test2Data", 301, senior, junior)
    train = read_isbi2015(tmp_path, "training")
    assert [s.name for s in train] == ["001.bmp"]
    np.testing.assert_allclose(train[0].landmarks, senior + 1)
    sample = train[0].load()
    assert sample.spacing == (0.1, 0.1) and sample.image.shape == (96, 80)
    assert [s.name for s in open_dataset(tmp_path, "test")] == ["151.bmp", "301.bmp"]
    assert [s.name for s in open_dataset(tmp_path, "test2")] == ["301.bmp"]
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path, "validation")


# --- hand atlas ------------------------------------------------------------------------------


def test_hand_csv_and_wrist_spacing(tmp_path):
    (tmp_path / "images").mkdir()
    rows, expected = [], {}
    for image_id in ("3128", "3129"):
        Image.fromarray(_image((90, 70), seed=int(image_id))).save(
            tmp_path / "images" / f"{image_id}.jpg"
        )
        rc = _rc(37, (90, 70), seed=int(image_id))
        expected[image_id] = rc
        rows.append([image_id] + [str(v) for v in rc[:, ::-1].ravel().tolist()])
    with (tmp_path / "all.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "fold1.txt").write_text("3129\n")
    sources = read_hand(tmp_path)
    assert [s.name for s in sources] == ["3128", "3129"]
    for source in sources:
        np.testing.assert_allclose(source.landmarks, expected[source.name])
        assert source.load().spacing is None
    assert [s.name for s in open_dataset(tmp_path, "fold1")] == ["3129"]
    assert len(open_dataset(tmp_path, "training")) == 2
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path, "test")

    landmarks = np.full((37, 2), np.nan)
    landmarks[0], landmarks[4] = (10.0, 10.0), (10.0, 110.0)  # wrist 100 px wide
    assert hand_spacing(landmarks) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="wrist"):
        hand_spacing(np.full((37, 2), np.nan))


# --- sidecars --------------------------------------------------------------------------------


def _sidecar(points: np.ndarray, shape=(64, 48), spacing=None) -> Annotation:
    return Annotation(
        image_name="x",
        image_shape=shape,
        landmark_names=("a", "b", "c"),
        points=points,
        source=["human"] * 3,
        spacing=spacing,
    )


def test_sidecar_folder(tmp_path):
    points = np.array([[10.0, 12.0], [np.nan, np.nan], [40.0, 30.0]])
    for name in ("a.png", "b.png", "c.png", "d.png"):
        write_image(tmp_path / name, _image((64, 48)))
    write_annotation(sidecar_path(tmp_path / "a.png"), _sidecar(points, spacing=(0.2, 0.2)))
    (tmp_path / "annotations").mkdir()
    write_annotation(sidecar_path(tmp_path / "b.png", tmp_path / "annotations"), _sidecar(points))
    write_annotation(sidecar_path(tmp_path / "c.png"), _sidecar(np.full((3, 2), np.nan)))
    # d.png has no sidecar; c.png has no point at all: both are left out.
    sources = open_dataset(tmp_path, "training")
    assert [s.name for s in sources] == ["a.png", "b.png"]
    sample = sources[0].load()
    np.testing.assert_array_equal(sample.landmarks, points)  # NaN stays NaN
    assert sample.spacing == (0.2, 0.2)
    assert [s.name for s in read_sidecars(tmp_path)] == ["a.png"]
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path, "validation")

    write_annotation(sidecar_path(tmp_path / "a.png"), _sidecar(points, shape=(65, 48)))
    with pytest.raises(ValueError, match="a.png"):
        read_sidecars(tmp_path)[0].load()


def test_sidecar_split_folders(tmp_path):
    for split in ("training", "validation"):
        (tmp_path / split).mkdir()
        write_image(tmp_path / split / f"{split}.png", _image((64, 48)))
        write_annotation(sidecar_path(tmp_path / split / f"{split}.png"), _sidecar(np.ones((3, 2))))
    assert [s.name for s in open_dataset(tmp_path, "validation")] == ["validation.png"]
    assert [s.name for s in open_dataset(tmp_path, "training")] == ["training.png"]


# --- loading and reduction -------------------------------------------------------------------


def test_reduction_keeps_landmarks_on_their_pixels():
    image = np.zeros((300, 200), np.float32)
    landmarks = np.array([[30.0, 40.0], [151.0, 99.0], [np.nan, np.nan], [280.0, 170.0]])
    for r, c in landmarks[[0, 1, 3]].astype(int):
        image[r - 3 : r + 4, c - 3 : c + 4] = 1.0  # 7x7 square centred on the landmark
    sample = sample_from_array(image, landmarks, "dots", max_side=100, spacing=(0.1, 0.2))
    assert max(sample.image.shape) <= 100 and sample.image.shape == (100, 66)
    assert sample.spacing == pytest.approx((0.3, 0.6))
    assert np.isnan(sample.landmarks[2]).all()
    for r, c in sample.landmarks[[0, 1, 3]]:
        window = sample.image[round(r) - 2 : round(r) + 3, round(c) - 2 : round(c) + 3]
        rows, cols = np.mgrid[-2:3, -2:3]
        centroid = (
            (window * rows).sum() / window.sum() + round(r),
            (window * cols).sum() / window.sum() + round(c),
        )
        assert centroid == pytest.approx((r, c), abs=0.05)
    same = sample_from_array(image, landmarks, "dots", max_side=None)
    assert same.image.shape == (300, 200)


def test_dicom_source_spacing_follows_reduction(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("RG3_UNCR.dcm"))
    ds.PixelSpacing = [0.2, 0.2]
    path = tmp_path / "ankle.dcm"
    ds.save_as(path)
    source = SampleSource(path=path, landmarks=np.array([[880.0, 880.0]]), name="ankle")
    sample = source.load(max_side=440)
    assert sample.image.shape == (440, 440)
    assert sample.spacing == pytest.approx((0.8, 0.8))
    np.testing.assert_allclose(sample.landmarks, [[(880.0 - 1.5) / 4, (880.0 - 1.5) / 4]])


def test_unknown_layout_and_missing_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        open_dataset(tmp_path)
    with pytest.raises(FileNotFoundError):
        open_dataset(tmp_path / "missing")
