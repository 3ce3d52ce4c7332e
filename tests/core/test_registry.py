"""Model registry with real (tiny, untrained) checkpoints in a temporary root."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from napari_nfdp.core import registry as registry_module
from napari_nfdp.core.checkpoint import (
    DEFAULT_MODEL_PATH,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from napari_nfdp.core.network import LandmarkNet, ModelConfig
from napari_nfdp.core.registry import ModelRegistry, ModelVersion, RegistryError
from napari_nfdp.core.schema import generic_landmark_names

K = 4


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = LandmarkNet(ModelConfig("regression", K, (64, 32)))
    path = tmp_path_factory.mktemp("ckpt") / "candidate.pt"
    metrics = {"val_mre_pct": 3.5, "corrected_images": 5}
    return save_checkpoint(
        path, model, landmark_names=generic_landmark_names(K), metrics=metrics, half=True
    )


@pytest.fixture
def candidate(checkpoint_file) -> Path:
    """The fine-tuned file offered to the registry (shared: the registry only reads it)."""
    return checkpoint_file


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


def _metrics(before: float, after: float) -> dict:
    return {"val_mre_pct_before": before, "val_mre_pct_after": after, "holdout_images": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_empty_registry_lists_the_bundled_default(registry):
    versions = registry.versions()
    assert [v.id for v in versions] == ["bundled"]
    assert versions[0].path == DEFAULT_MODEL_PATH
    assert versions[0].label == "bundled default"
    assert registry.selected() == versions[0]
    assert not registry.root.exists()  # reading creates nothing


def test_default_root_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_NFDP_HOME", str(tmp_path / "home"))
    assert ModelRegistry.default().root == tmp_path / "home" / "models"
    monkeypatch.delenv("NAPARI_NFDP_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ModelRegistry.default().root == tmp_path / ".napari-nfdp" / "models"


def test_publish_improvement_keeps_a_selected_copy(registry, candidate):
    version, reason = registry.publish(
        candidate, parent="bundled", n_images=3, metrics=_metrics(0.5, 0.42)
    )
    assert version is not None and version.id == "v1"
    assert reason == "published v1: validation MRE 0.50 % -> 0.42 %"
    assert version.path == registry.root / "versions" / "v1.pt"
    assert version.path.read_bytes() == candidate.read_bytes()  # a copy; candidate kept
    assert load_checkpoint(version.path).landmark_names == generic_landmark_names(K)
    assert (version.parent, version.n_images) == ("bundled", 3)
    assert version.label.startswith("v1 · 20") and version.label.endswith("3 images · MRE 0.42 %")
    reopened = ModelRegistry(registry.root)
    assert [v.id for v in reopened.versions()] == ["bundled", "v1"]
    assert reopened.selected() == version
    stored = json.loads((registry.root / "registry.json").read_text())
    assert stored["selected"] == "v1" and stored["versions"][0]["file"] == "versions/v1.pt"


@pytest.mark.parametrize(
    ("before", "after", "published"),
    [(0.5, 0.5, True), (math.nan, 0.3, True), (math.nan, math.nan, True), (0.5, math.nan, False)],
)
def test_publish_rule_edges(registry, candidate, before, after, published):
    version, reason = registry.publish(
        candidate, parent="bundled", n_images=1, metrics=_metrics(before, after)
    )
    assert (version is not None) is published
    assert ("published v1" in reason) is published
    if published:
        json.loads((registry.root / "registry.json").read_text(), parse_constant=pytest.fail)


def test_worse_candidate_is_rejected_and_old_model_kept(registry, candidate):
    registry.publish(candidate, parent="bundled", n_images=2, metrics=_metrics(0.9, 0.61))
    before = _files(registry.root)
    version, reason = registry.publish(
        candidate, parent="v1", n_images=4, metrics=_metrics(0.61, 0.74)
    )
    assert version is None
    assert reason == "validation MRE got worse: 0.61 % -> 0.74 %; kept v1"
    assert _files(registry.root) == before
    assert registry.selected().id == "v1"


def test_rollback_select_and_unknown_ids(registry, candidate):
    for parent, after in (("bundled", 0.5), ("v1", 0.4)):
        registry.publish(candidate, parent=parent, n_images=2, metrics=_metrics(0.6, after))
    assert registry.selected().id == "v2"
    assert registry.rollback().id == "v1"
    assert registry.selected().id == "v1"
    assert registry.rollback().id == "bundled"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    assert [v.id for v in registry.versions()] == ["bundled", "v1", "v2"]
    assert all(v.path.is_file() for v in registry.versions()[1:])
    assert registry.select("v2").id == "v2"
    with pytest.raises(KeyError, match="no model version 'v9'.*bundled, v1, v2"):
        registry.select("v9")
    with pytest.raises(KeyError, match="v7"):
        registry.publish(candidate, parent="v7", n_images=1, metrics=_metrics(1, 0.5))


def test_add_file_validates_and_copies(registry, candidate, tmp_path):
    version = registry.add_file(candidate)
    assert (version.id, version.note, version.parent, version.n_images) == (
        "v1",
        "candidate.pt",
        None,
        5,
    )
    assert version.metrics["val_mre_pct"] == pytest.approx(3.5)
    assert "MRE 3.50 %" in version.label and "candidate.pt" in version.label
    assert registry.selected() == version
    bad = tmp_path / "notes.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt"):
        registry.add_file(bad)
    with pytest.raises(CheckpointError):
        registry.publish(bad, parent="v1", n_images=1, metrics=_metrics(1, 0.5))
    assert sorted(p.name for p in (registry.root / "versions").iterdir()) == ["v1.pt"]
    assert [v.id for v in registry.versions()] == ["bundled", "v1"]


def test_existing_version_files_are_never_overwritten(registry, candidate):
    orphan = registry.root / "versions" / "v1.pt"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left over from an earlier registry")
    version, _ = registry.publish(candidate, parent="bundled", n_images=1, metrics=_metrics(1, 0.5))
    assert version.id == "v2"
    assert orphan.read_bytes() == b"left over from an earlier registry"


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"format": "something else", "version": 1, "versions": []}),
        json.dumps({"format": registry_module.FORMAT_TAG, "version": 1, "versions": {}}),
        json.dumps(
            {"format": registry_module.FORMAT_TAG, "version": 1, "selected": "v3", "versions": []}
        ),
        json.dumps(
            {"format": registry_module.FORMAT_TAG, "version": 1, "versions": [{"id": "v1"}]}
        ),
    ],
    ids=["not-json", "wrong-format", "versions-not-list", "unknown-selected", "entry-no-file"],
)
def test_corrupt_registry_is_a_clear_error_and_loses_nothing(registry, candidate, content):
    (registry.root / "versions").mkdir(parents=True)
    shutil.copy(candidate, registry.root / "versions" / "v1.pt")
    (registry.root / "registry.json").write_text(content)
    before = _files(registry.root)
    for call in (
        registry.versions,
        registry.selected,
        registry.rollback,
        lambda: registry.select("bundled"),
        lambda: registry.add_file(candidate),
        lambda: registry.publish(candidate, parent="bundled", n_images=1, metrics=_metrics(1, 0)),
    ):
        with pytest.raises(RegistryError, match="registry.json is corrupt.*untouched"):
            call()
    assert _files(registry.root) == before


def test_newer_registry_version_is_refused(registry):
    registry.root.mkdir()
    (registry.root / "registry.json").write_text(
        json.dumps({"format": registry_module.FORMAT_TAG, "version": 99, "versions": []})
    )
    with pytest.raises(RegistryError, match="newer napari-nfdp"):
        registry.versions()


def test_failed_registry_write_keeps_the_previous_file(registry, candidate, monkeypatch):
    registry.publish(candidate, parent="bundled", n_images=1, metrics=_metrics(1, 0.5))
    before = (registry.root / "registry.json").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(registry_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        registry.select("bundled")
    monkeypatch.undo()
    assert (registry.root / "registry.json").read_bytes() == before
    assert not [p for p in registry.root.rglob("*") if p.name.endswith(".tmp")]
    assert registry.selected().id == "v1"


def test_label_of_a_version_without_metrics():
    version = ModelVersion(id="v3", path=Path("v3.pt"), created="2026-11-24T14:02:00+00:00")
    assert version.label.startswith("v3 · 2026-11-2")
    assert "MRE" not in version.label and "images" not in version.label
    assert math.isnan(version.mre_pct)
    assert os.fspath(version.path) == "v3.pt"
