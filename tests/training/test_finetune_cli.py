"""``python -m training finetune``: the GUI's rule (human corrections only) and its publish path."""

from __future__ import annotations

import json
import logging
import tempfile

import pytest

import training.finetune
from napari_nfdp.core.checkpoint import load_checkpoint, update_metrics
from napari_nfdp.core.registry import ModelRegistry
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES
from napari_nfdp.io.annotations import Annotation, sidecar_path, write_annotation
from napari_nfdp.io.images import write_image
from napari_nfdp.simulator import synthesize_spine
from tests.conftest import SMALL_SHAPE
from training.__main__ import main


@pytest.fixture
def registry(tmp_path, monkeypatch, tiny_checkpoint) -> ModelRegistry:
    """A private default registry ($NAPARI_NFDP_HOME) with the tiny model selected as v1."""
    monkeypatch.setenv("NAPARI_NFDP_HOME", str(tmp_path / "home"))
    registry = ModelRegistry.default()
    registry.add_file(tiny_checkpoint, note="tiny test model")
    return registry


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Where temporary run folders go, to check they are removed."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def trained_on(monkeypatch) -> list[int]:
    """Run the real fine-tune, record how many images it got, and make it "better" (so the
    registry's publish rule accepts it whatever one tiny step did)."""
    sizes: list[int] = []
    real = training.finetune.finetune

    def finetune(base, images, landmarks, out, *args, **kwargs):
        sizes.append(len(images))
        path = real(base, images, landmarks, out, *args, **kwargs)
        before = load_checkpoint(path).metrics["val_mre_pct_before"]
        update_metrics(path, {"val_mre_pct_after": 0.9 * before})
        return path

    monkeypatch.setattr(training.finetune, "finetune", finetune)
    return sizes


def _films(folder, sources: dict[str, str | None]) -> None:
    """Synthetic films film<i>.png with sidecars whose points all have the given source."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, source) in enumerate(sources.items()):
        case = synthesize_spine(200 + i, shape=SMALL_SHAPE)
        path = write_image(folder / name, case.image)
        if source is not None:
            write_annotation(
                sidecar_path(path),
                Annotation(
                    image_name=name,
                    image_shape=case.image.shape,
                    landmark_names=SPINE_LANDMARK_NAMES,
                    points=case.landmarks,
                    source=[source] * len(SPINE_LANDMARK_NAMES),
                ),
            )


def _finetune(*args: str) -> int:
    return main(["finetune", "--epochs", "1", "--device", "cpu", *args])


def test_publishes_a_version_from_human_corrections_only(
    registry, tmp_path, scratch, trained_on, capsys
):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human", "film2.png": "model", "film3.png": None})
    assert _finetune("--data", str(folder)) == 0
    out = capsys.readouterr().out
    assert trained_on == [1]  # film2's model-only sidecar is not a correction
    selected = registry.selected()
    assert selected.id == "v2" and selected.parent == "v1" and selected.n_images == 1
    assert load_checkpoint(selected.path).metrics["corrected_images"] == 1
    assert "Fine-tuned on 1 image: published v2" in out and "selected v2" in out
    assert list(scratch.iterdir()) == []  # the temporary run folder is gone


def test_no_publish_leaves_the_registry_unchanged(registry, tmp_path, trained_on, capsys):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human", "film2.png": "human"})
    before = registry.file.read_bytes()
    out = tmp_path / "ft"
    assert _finetune("--data", str(folder), "--no-publish", "--out", str(out)) == 0
    assert registry.file.read_bytes() == before
    assert [v.id for v in registry.versions()] == ["bundled", "v1"]
    assert registry.selected().id == "v1"
    assert load_checkpoint(out / "best.pt").metrics["corrected_images"] == 2
    printed = capsys.readouterr().out
    assert "not published" in printed and f"fine-tuned checkpoint: {out / 'best.pt'}" in printed
    assert trained_on == [2]


def test_no_publish_needs_out(registry, tmp_path, capsys):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human"})
    assert _finetune("--data", str(folder), "--no-publish") == 2
    assert "--no-publish needs --out" in capsys.readouterr().err


def test_malformed_sidecars_are_skipped_and_reported(registry, tmp_path, trained_on, capsys):
    folder = tmp_path / "films"
    sources = {"film1.png": "human", "film2.png": "human", "film3.png": None, "film4.png": "human"}
    _films(folder, sources)
    sidecar_path(folder / "film3.png").write_text('{"a":' * 5000)  # RecursionError when decoded
    film4 = sidecar_path(folder / "film4.png")
    data = json.loads(film4.read_text())
    data["points"][0][0] = 10**400  # a 400-digit number: OverflowError as a float
    film4.write_text(json.dumps(data))
    assert _finetune("--data", str(folder)) == 0
    out = capsys.readouterr().out
    assert trained_on == [2]
    assert registry.selected().n_images == 2
    assert "skipped film3.png.nfdp.json" in out and "skipped film4.png.nfdp.json" in out


def test_base_can_be_a_version_id_or_an_outside_checkpoint(
    registry, tmp_path, tiny_checkpoint, trained_on, capsys
):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human"})
    assert _finetune("--data", str(folder), "--base", "v1") == 0
    assert registry.selected().parent == "v1"
    # A checkpoint that is not a registry version cannot be published there ...
    assert _finetune("--data", str(folder), "--base", str(tiny_checkpoint)) == 2
    assert "not a model version of the registry" in capsys.readouterr().err
    # ... but can be fine-tuned into a run folder (the old --checkpoint spelling).
    out = tmp_path / "ft"
    args = ["--data", str(folder), "--checkpoint", str(tiny_checkpoint), "--no-publish"]
    assert _finetune(*args, "--out", str(out)) == 0
    assert (out / "best.pt").is_file() and registry.selected().id == "v2"
    assert _finetune("--data", str(folder), "--base", "v9") == 2
    assert "neither a model version" in capsys.readouterr().err


def test_without_corrections_it_explains_and_fails(registry, tmp_path, capsys):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "model", "film2.png": None})
    assert _finetune("--data", str(folder)) == 2
    assert "No corrected images to learn from among 2 images" in capsys.readouterr().err
    assert registry.selected().id == "v1"


def test_a_failed_finetune_logs_its_traceback(registry, tmp_path, monkeypatch, capsys, caplog):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human"})

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(training.finetune, "finetune", broken)
    with caplog.at_level(logging.ERROR, logger="training.finetune"):
        assert _finetune("--data", str(folder)) == 2
    assert "Fine-tuning failed: out of memory" in capsys.readouterr().err
    record = next(r for r in caplog.records if r.name == "training.finetune")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert registry.selected().id == "v1"


def test_sidecars_in_an_annotations_subfolder_are_found(registry, tmp_path, trained_on):
    folder = tmp_path / "films"
    _films(folder, {"film1.png": "human", "film2.png": "human"})
    (folder / "annotations").mkdir()
    sidecar_path(folder / "film1.png").rename(folder / "annotations" / "film1.png.nfdp.json")
    assert _finetune("--data", str(folder)) == 0
    assert trained_on == [2]


def test_not_publishing_needs_a_run_folder(registry):
    with pytest.raises(ValueError, match="run folder"):
        training.finetune.finetune_and_publish(registry, None, [], publish=False)
