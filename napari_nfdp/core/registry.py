"""Versioned model store: every fine-tuned checkpoint kept with its metadata, with rollback.

Layout under ``root``::

    registry.json           {"format": ..., "version": 1, "selected": "v2", "versions": [...]}
    versions/v1.pt, v2.pt   checkpoint copies; a file is never overwritten or deleted

The bundled default model (id ``"bundled"``, :data:`DEFAULT_MODEL_PATH`) is always the first
version and is not stored in ``registry.json``. A new fine-tuned model is published only when its
validation error did not get worse. ``registry.json`` is rewritten atomically (temporary file +
rename); a corrupt one raises :class:`RegistryError` and is left on disk, as are all model files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, load_checkpoint

FORMAT_TAG = "napari-nfdp-model-registry"
FORMAT_VERSION = 1
BUNDLED_ID = "bundled"
REGISTRY_FILE = "registry.json"
VERSIONS_DIR = "versions"
HOME_VARIABLE = "NAPARI_NFDP_HOME"
_VERSION_ID = re.compile(r"v(\d+)")


class RegistryError(ValueError):
    """The registry cannot do what was asked (corrupt registry.json, nothing to roll back to)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _number(value: Any) -> float:
    """A metric as a float; None, missing or non-numeric values become NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _json_safe(value: Any) -> Any:
    """Metrics as plain JSON: non-finite floats -> None, numpy scalars/arrays -> Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return str(value)


@dataclass(frozen=True)
class ModelVersion:
    """One stored model: its checkpoint path and where it came from."""

    id: str
    path: Path
    created: str
    n_images: int = 0
    metrics: dict = field(default_factory=dict)
    parent: str | None = None
    note: str = ""

    @property
    def mre_pct(self) -> float:
        """Validation MRE in percent of image height (after fine-tuning), NaN when unknown."""
        return _number(self.metrics.get("val_mre_pct_after", self.metrics.get("val_mre_pct")))

    @property
    def label(self) -> str:
        """Text for a model picker, e.g. "v3 · 2026-11-24 14:02 · 12 images · MRE 0.42 %"."""
        if self.id == BUNDLED_ID:
            return "bundled default"
        parts = [self.id]
        with contextlib.suppress(ValueError):
            parts.append(
                datetime.fromisoformat(self.created).astimezone().strftime("%Y-%m-%d %H:%M")
            )
        if self.n_images:
            parts.append(f"{self.n_images} image{'s' if self.n_images != 1 else ''}")
        if math.isfinite(self.mre_pct):
            parts.append(f"MRE {self.mre_pct:.2f} %")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)

    def _to_json(self, root: Path) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.path.relative_to(root).as_posix(),
            "created": self.created,
            "n_images": self.n_images,
            "metrics": _json_safe(self.metrics),
            "parent": self.parent,
            "note": self.note,
        }


def _bundled_version() -> ModelVersion:
    try:
        mtime = DEFAULT_MODEL_PATH.stat().st_mtime
        created = datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        created = ""
    return ModelVersion(
        id=BUNDLED_ID, path=DEFAULT_MODEL_PATH, created=created, note="bundled with napari-nfdp"
    )


@dataclass
class _State:
    selected: str
    versions: list[ModelVersion]  # stored versions only, oldest first


class ModelRegistry:
    """Model versions under ``root``; reads ``registry.json`` afresh on every call."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.file = self.root / REGISTRY_FILE
        self.versions_dir = self.root / VERSIONS_DIR

    @classmethod
    def default(cls) -> ModelRegistry:
        """The user's registry: ``$NAPARI_NFDP_HOME/models`` or ``~/.napari-nfdp/models``."""
        home = os.environ.get(HOME_VARIABLE) or Path.home() / ".napari-nfdp"
        return cls(Path(home) / "models")

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """All versions, oldest first; the bundled default is always the first."""
        return [_bundled_version(), *self._load().versions]

    def get(self, version_id: str) -> ModelVersion:
        """The version with this id (KeyError naming the known ids otherwise)."""
        return self._find(self.versions(), version_id)

    def selected(self) -> ModelVersion:
        """The version Detect and fine-tuning start from (bundled default until one is chosen)."""
        state = self._load()
        return self._find([_bundled_version(), *state.versions], state.selected)

    # -- changing --------------------------------------------------------------------------------

    def select(self, version_id: str) -> ModelVersion:
        """Make a version the selected one and return it."""
        state = self._load()
        version = self._find([_bundled_version(), *state.versions], version_id)
        state.selected = version.id
        self._save(state)
        return version

    def rollback(self) -> ModelVersion:
        """Select the version before the selected one; newer versions stay available."""
        state = self._load()
        versions = [_bundled_version(), *state.versions]
        index = [v.id for v in versions].index(state.selected)
        if index == 0:
            raise RegistryError("the bundled default is the oldest model; nothing to roll back to")
        state.selected = versions[index - 1].id
        self._save(state)
        return versions[index - 1]

    def add_file(self, path: str | Path, note: str = "") -> ModelVersion:
        """Validate a checkpoint file, copy it in as a new version and select it.

        Raises :class:`~napari_nfdp.core.checkpoint.CheckpointError` for an unusable file.
        """
        path = Path(path)
        checkpoint = load_checkpoint(path)
        n_images = checkpoint.metrics.get("corrected_images", 0)
        return self._add(
            path,
            n_images=int(n_images) if isinstance(n_images, int | float) else 0,
            metrics=checkpoint.metrics,
            parent=None,
            note=note or path.name,
        )

    def publish(
        self, candidate: str | Path, *, parent: str, n_images: int, metrics: dict
    ) -> tuple[ModelVersion | None, str]:
        """Keep a fine-tuned candidate as a new selected version if validation did not get worse.

        Uses ``metrics["val_mre_pct_before"]`` / ``["val_mre_pct_after"]`` (percent of image
        height, both on the same held-out images). Returns ``(version, reason)``, or
        ``(None, reason)`` when the candidate is rejected (the selected version stays).
        """
        self.get(parent)
        before = _number(metrics.get("val_mre_pct_before"))
        after = _number(metrics.get("val_mre_pct_after"))
        if math.isfinite(before):
            kept = self.selected().id
            if not math.isfinite(after):
                return None, f"validation MRE after fine-tuning was not measured; kept {kept}"
            if after > before:
                return (
                    None,
                    f"validation MRE got worse: {before:.2f} % -> {after:.2f} %; kept {kept}",
                )
        load_checkpoint(candidate)
        version = self._add(
            Path(candidate), n_images=int(n_images), metrics=metrics, parent=parent, note=""
        )
        if math.isfinite(before):
            reason = f"published {version.id}: validation MRE {before:.2f} % -> {after:.2f} %"
            if metrics.get("holdout_images") == 0:
                reason += " (on the training images: too few to hold any out)"
        else:
            reason = f"published {version.id} (no held-out images to validate on)"
        return version, reason

    # -- internals -------------------------------------------------------------------------------

    def _add(
        self, source: Path, *, n_images: int, metrics: dict, parent: str | None, note: str
    ) -> ModelVersion:
        state = self._load()
        version_id = self._next_id(state)
        target = self.versions_dir / f"{version_id}.pt"
        with source.open("rb") as src:
            atomic_write(target, lambda out: shutil.copyfileobj(src, out))
        version = ModelVersion(
            id=version_id,
            path=target,
            created=_now(),
            n_images=n_images,
            metrics=_json_safe(dict(metrics)),
            parent=parent,
            note=note,
        )
        state.versions.append(version)
        state.selected = version_id
        self._save(state)
        return version

    def _next_id(self, state: _State) -> str:
        """A fresh "v<n>" above every recorded id and every file already in versions/."""
        taken = [v.id for v in state.versions]
        if self.versions_dir.is_dir():
            taken += [p.name.split(".")[0] for p in self.versions_dir.iterdir()]
        numbers = [int(m.group(1)) for t in taken if (m := _VERSION_ID.fullmatch(t))]
        return f"v{max(numbers, default=0) + 1}"

    @staticmethod
    def _find(versions: list[ModelVersion], version_id: str) -> ModelVersion:
        for version in versions:
            if version.id == version_id:
                return version
        known = ", ".join(v.id for v in versions)
        raise KeyError(f"no model version {version_id!r} in the registry (known: {known})")

    def _corrupt(self, why: str) -> RegistryError:
        return RegistryError(
            f"the model registry {self.file} is corrupt ({why}); the model files in "
            f"{self.versions_dir} are untouched: move {REGISTRY_FILE} aside to start a new registry"
        )

    def _load(self) -> _State:
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _State(selected=BUNDLED_ID, versions=[])
        except (OSError, UnicodeDecodeError) as error:
            raise self._corrupt(f"unreadable: {error}") from error
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise self._corrupt(f"not valid JSON: {error}") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
            raise self._corrupt("not a napari-nfdp model registry")
        if data.get("version") != FORMAT_VERSION:
            raise RegistryError(
                f"{self.file} has registry version {data.get('version')!r}; this napari-nfdp "
                f"reads version {FORMAT_VERSION} (a newer napari-nfdp may have written it)"
            )
        entries = data.get("versions")
        if not isinstance(entries, list):
            raise self._corrupt("'versions' is not a list")
        versions = [self._parse_entry(i, entry) for i, entry in enumerate(entries)]
        ids = [BUNDLED_ID, *(v.id for v in versions)]
        if len(set(ids)) != len(ids):
            raise self._corrupt("duplicate version ids")
        selected = data.get("selected", BUNDLED_ID)
        if selected not in ids:
            raise self._corrupt(f"the selected version {selected!r} is not listed")
        return _State(selected=selected, versions=versions)

    def _parse_entry(self, index: int, entry: Any) -> ModelVersion:
        try:
            file = Path(entry["file"])
            if file.is_absolute() or ".." in file.parts:
                raise ValueError(f"file {entry['file']!r} is outside the registry")
            version = ModelVersion(
                id=str(entry["id"]),
                path=self.root / file,
                created=str(entry["created"]),
                n_images=int(entry.get("n_images", 0)),
                metrics=dict(entry.get("metrics") or {}),
                parent=None if entry.get("parent") is None else str(entry["parent"]),
                note=str(entry.get("note", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise self._corrupt(f"version entry {index} is malformed: {error!r}") from error
        if not _VERSION_ID.fullmatch(version.id):
            raise self._corrupt(f"version entry {index} has an invalid id {version.id!r}")
        return version

    def _save(self, state: _State) -> None:
        payload = {
            "format": FORMAT_TAG,
            "version": FORMAT_VERSION,
            "selected": state.selected,
            "versions": [v._to_json(self.root) for v in state.versions],
        }
        text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
        atomic_write(self.file, lambda out: out.write(text.encode("utf-8")))
