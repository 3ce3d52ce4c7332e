"""Model registry with real (tiny, untrained) checkpoints in a temporary root."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
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


REPO = Path(__file__).resolve().parents[2]


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the (empty) lock file that any change creates."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != registry_module.LOCK_FILE
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte of a file in place (same size), as bit rot or a stray write would."""
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0x01
    with path.open("r+b") as stream:
        stream.write(data)


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


def test_processes_adding_at_once_lose_no_version(tmp_path):
    """Real processes add to one registry at the same time: every acknowledged version is
    listed once, with its own file, holding what that process wrote."""
    workers, count = 4, 8
    root, scratch, go = tmp_path / "models", tmp_path / "scratch", tmp_path / "go"
    scratch.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.core.registry_worker"]
            + [str(root), str(scratch), str(worker), str(count), str(go)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(workers)
    ]
    time.sleep(3)  # let every worker import torch and build its model
    go.touch()
    acks = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        acks += [json.loads(line) for line in out.splitlines()]
    assert len(acks) == workers * count

    registry = ModelRegistry(root)
    listed = {v.id: v for v in registry.versions()[1:]}
    assert len(listed) == len(registry.versions()) - 1  # ids unique
    assert sorted(listed) == sorted(ack["id"] for ack in acks)  # no version lost
    for ack in acks:
        version = listed[ack["id"]]
        assert version.note == f"w{ack['worker']}-{ack['item']}"
        assert version.sha256 == ack["sha256"] == _sha256(version.path)
        metrics = load_checkpoint(version.path).metrics
        assert (metrics["worker"], metrics["item"]) == (ack["worker"], ack["item"])
    files = sorted(p.name for p in (root / "versions").iterdir())
    assert files == sorted(f"{ack['id']}.pt" for ack in acks)  # no stray or temporary files


def test_a_published_file_changed_on_disk_is_refused_and_kept(registry, candidate):
    first, _ = registry.publish(candidate, parent="bundled", n_images=1, metrics=_metrics(1, 0.5))
    second, _ = registry.publish(candidate, parent="v1", n_images=1, metrics=_metrics(0.5, 0.4))
    stored = json.loads(registry.file.read_text())["versions"]
    assert [e["sha256"] for e in stored] == [_sha256(candidate)] * 2
    assert registry.selected() == second and registry.get("v1") == first  # checked, and good

    stat = first.path.stat()
    _flip_byte(first.path)
    os.utime(first.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    flipped = first.path.read_bytes()
    for call in (lambda: registry.get("v1"), lambda: registry.select("v1"), registry.rollback):
        with pytest.raises(RegistryError, match="changed on disk since it was published") as info:
            call()
        assert str(first.path) in str(info.value)
    assert registry.selected() == second  # selection unchanged, other versions still usable
    assert first.path.read_bytes() == flipped  # the file is kept as it is
    assert [v.id for v in registry.versions()] == ["bundled", "v1", "v2"]

    registry.select("bundled")
    _flip_byte(second.path, offset=100)
    with pytest.raises(RegistryError, match="v2.pt"):
        registry.select("v2")
    assert registry.selected().id == "bundled"


def test_a_selected_file_changed_after_it_was_checked_is_refused(registry, candidate):
    version = registry.add_file(candidate)
    assert registry.selected() == version  # hashed once, remembered
    _flip_byte(version.path)
    with pytest.raises(RegistryError, match=f"{version.path}.*changed on disk"):
        registry.selected()
    with pytest.raises(RegistryError, match="changed on disk"):
        ModelRegistry(registry.root).selected()


def test_an_entry_without_a_hash_is_hashed_on_first_use(registry, candidate):
    registry.add_file(candidate)
    data = json.loads(registry.file.read_text())
    del data["versions"][0]["sha256"]
    registry.file.write_text(json.dumps(data))
    assert registry.versions()[1].sha256 is None
    assert registry.selected().sha256 == _sha256(candidate)
    assert json.loads(registry.file.read_text())["versions"][0]["sha256"] == _sha256(candidate)
    _flip_byte(registry.root / "versions" / "v1.pt")
    with pytest.raises(RegistryError, match="changed on disk"):
        registry.get("v1")


def test_an_invalid_stored_hash_is_a_corrupt_registry(registry, candidate):
    registry.add_file(candidate)
    data = json.loads(registry.file.read_text())
    data["versions"][0]["sha256"] = "not a digest"
    registry.file.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match="corrupt.*sha256"):
        registry.versions()


def test_checkpoints_with_non_finite_weights_are_not_added(registry, tmp_path):
    model = LandmarkNet(ModelConfig("regression", K, (64, 32)))
    with torch.no_grad():
        next(model.parameters())[0].fill_(math.nan)
    path = save_checkpoint(tmp_path / "nan.pt", model, landmark_names=generic_landmark_names(K))
    with pytest.raises(CheckpointError, match="nan.pt.*not finite"):
        registry.add_file(path)
    with pytest.raises(CheckpointError, match="nan.pt.*not finite"):
        registry.publish(path, parent="bundled", n_images=1, metrics=_metrics(1, 0.5))
    assert registry.selected().id == "bundled"
    assert not (registry.root / "versions").exists() or not any(
        (registry.root / "versions").iterdir()
    )


def test_opening_a_registry_removes_stale_temporaries_only(registry, candidate):
    registry.add_file(candidate)
    versions = registry.root / "versions"
    old = time.time() - 2 * 3600
    stale = [versions / ".v2.pt.k3j4h5g6.tmp", registry.root / ".registry.json.a1b2c3d4.tmp"]
    fresh = versions / ".v3.pt.z9y8x7w6.tmp"  # a write in progress in another process
    others = [versions / "notes.tmp", registry.root / "my-model.pt"]  # not ours
    for path in [*stale, fresh, *others]:
        path.write_bytes(b"x" * 1000)
    for path in [*stale, *others]:
        os.utime(path, (old, old))
    assert [v.id for v in ModelRegistry(registry.root).versions()] == ["bundled", "v1"]
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and all(path.exists() for path in others)
