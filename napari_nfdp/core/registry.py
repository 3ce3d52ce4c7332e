"""Versioned model store: every fine-tuned checkpoint kept with its metadata, with rollback.

Layout under ``root``::

    registry.json           {"format": ..., "version": 1, "selected": "v2", "versions": [...]}
    registry.lock           lock file of every change (empty)
    versions/v1.pt, v2.pt   checkpoint copies; a file is never overwritten or deleted

The bundled default model (id ``"bundled"``, :data:`DEFAULT_MODEL_PATH`) is always the first
version and is not stored in ``registry.json``. A new fine-tuned model is published only when its
validation error did not get worse. ``registry.json`` is rewritten atomically (temporary file +
rename); a corrupt one raises :class:`RegistryError` and is left on disk, as are all model files.

Several processes may share one registry: every change (add, publish, select, rollback) holds an
exclusive ``fcntl.flock`` on ``registry.lock`` from reading the index to rewriting it, so no
version is lost and no id is given out twice. This is a POSIX advisory lock (Linux, macOS; on
NFS only where the server supports locks); where ``fcntl`` is missing (Windows) changes are
serialised within one process only. Reading needs no lock (``registry.json`` is replaced whole).

Each stored version's sha256 is kept in ``registry.json``; :meth:`ModelRegistry.get`,
:meth:`~ModelRegistry.selected`, :meth:`~ModelRegistry.select`, :meth:`~ModelRegistry.rollback`
and :meth:`~ModelRegistry.verify` check the file against it before handing the version out (the
hash of an unchanged file is remembered by size, mtime, ctime and inode), and raise
:class:`RegistryError` when the file changed on disk. Entries written before hashes were stored
are hashed on first use. Opening a registry removes stale temporary files of interrupted writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from napari_nfdp.core.atomic import atomic_write, remove_stale_temporaries
from napari_nfdp.core.checkpoint import DEFAULT_MODEL_PATH, load_checkpoint

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process lock
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

FORMAT_TAG = "napari-nfdp-model-registry"
FORMAT_VERSION = 1
BUNDLED_ID = "bundled"
REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"
VERSIONS_DIR = "versions"
HOME_VARIABLE = "NAPARI_NFDP_HOME"
LOCK_TIMEOUT = 120.0  # seconds to wait for another process's change before giving up
_VERSION_ID = re.compile(r"v(\d+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
# sha256 of files already hashed, by (path, device, inode, size, mtime_ns, ctime_ns)
_DIGESTS: dict[tuple[str, int, int, int, int, int], str] = {}
_PROCESS_LOCK = threading.Lock()  # stands in for flock where fcntl is missing


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


def _file_sha256(path: Path) -> str:
    """The sha256 of a file, remembered while its size, mtime, ctime and inode stay the same."""
    with path.open("rb") as stream:
        before = os.fstat(stream.fileno())
        key = (
            str(path),
            before.st_dev,
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
            before.st_ctime_ns,
        )
        digest = _DIGESTS.get(key)
        if digest is not None:
            return digest
        hasher = hashlib.sha256()
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
        after = os.fstat(stream.fileno())
    digest = hasher.hexdigest()
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == key[3:]:
        _DIGESTS[key] = digest  # not remembered when the file changed while it was read
    return digest


@dataclass(frozen=True)
class ModelVersion:
    """One stored model: its checkpoint path, content hash and where it came from."""

    id: str
    path: Path
    created: str
    n_images: int = 0
    metrics: dict = field(default_factory=dict)
    parent: str | None = None
    note: str = ""
    sha256: str | None = None  # of the file when it was stored; None for the bundled default

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
        entry = {
            "id": self.id,
            "file": self.path.relative_to(root).as_posix(),
            "created": self.created,
            "n_images": self.n_images,
            "metrics": _json_safe(self.metrics),
            "parent": self.parent,
            "note": self.note,
        }
        if self.sha256 is not None:
            entry["sha256"] = self.sha256
        return entry


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

    def replace(self, version: ModelVersion) -> None:
        """Put ``version`` in place of the stored entry with its id."""
        self.versions = [version if v.id == version.id else v for v in self.versions]


class ModelRegistry:
    """Model versions under ``root``; reads ``registry.json`` afresh on every call."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.file = self.root / REGISTRY_FILE
        self.lock_file = self.root / LOCK_FILE
        self.versions_dir = self.root / VERSIONS_DIR
        self._tidied = False

    @classmethod
    def default(cls) -> ModelRegistry:
        """The user's registry: ``$NAPARI_NFDP_HOME/models`` or ``~/.napari-nfdp/models``."""
        home = os.environ.get(HOME_VARIABLE) or Path.home() / ".napari-nfdp"
        return cls(Path(home) / "models")

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """All versions, oldest first; the bundled default is always the first.

        The files are not checked here: :meth:`get` or :meth:`verify` a version before use.
        """
        return [_bundled_version(), *self._load().versions]

    def get(self, version_id: str) -> ModelVersion:
        """The version with this id, its file checked (KeyError naming the known ids otherwise).

        Raises :class:`RegistryError` when the file changed on disk since it was stored.
        """
        return self.verify(self._find(self.versions(), version_id))

    def selected_id(self) -> str:
        """The id of the selected version, without checking its file (e.g. for a picker)."""
        return self._load().selected

    def selected(self) -> ModelVersion:
        """The version Detect and fine-tuning start from (bundled default until one is chosen).

        Its file is checked: :class:`RegistryError` when it changed on disk since it was stored.
        """
        state = self._load()
        return self.verify(self._find([_bundled_version(), *state.versions], state.selected))

    def verify(self, version: ModelVersion) -> ModelVersion:
        """Check a stored version's file against its sha256 and return the version.

        An entry stored without a hash (older registries) is hashed now and the hash is kept in
        ``registry.json``. The bundled default is not checked, nor is a missing file (loading it
        says it is missing). Raises :class:`RegistryError` naming the file when its content
        changed on disk since it was stored; the file is left as it is.
        """
        checked = self._check(version)
        if version.sha256 is None and checked.sha256 is not None:
            self._remember_hash(checked)
        return checked

    # -- changing --------------------------------------------------------------------------------

    def select(self, version_id: str) -> ModelVersion:
        """Make a version the selected one (its file checked, see :meth:`verify`); return it."""
        with self._locked():
            state = self._load()
            version = self._check(self._find([_bundled_version(), *state.versions], version_id))
            if version.id != BUNDLED_ID:
                state.replace(version)
            state.selected = version.id
            self._save(state)
        return version

    def rollback(self) -> ModelVersion:
        """Select the version before the selected one; newer versions stay available."""
        with self._locked():
            state = self._load()
            versions = [_bundled_version(), *state.versions]
            index = [v.id for v in versions].index(state.selected)
            if index == 0:
                raise RegistryError(
                    "the bundled default is the oldest model; nothing to roll back to"
                )
            version = self._check(versions[index - 1])
            if version.id != BUNDLED_ID:
                state.replace(version)
            state.selected = version.id
            self._save(state)
        return version

    def add_file(self, path: str | Path, note: str = "") -> ModelVersion:
        """Validate a checkpoint file, copy it in as a new version and select it.

        Raises :class:`~napari_nfdp.core.checkpoint.CheckpointError` for an unusable file
        (including one with NaN or infinite weights).
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
        self._find(self.versions(), parent)
        before = _number(metrics.get("val_mre_pct_before"))
        after = _number(metrics.get("val_mre_pct_after"))
        if math.isfinite(before):
            kept = self.selected_id()
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry's exclusive lock (``registry.lock``) for a read-modify-write.

        Not re-entrant: a method holding it must not call another that takes it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            with _PROCESS_LOCK:
                yield
            return
        handle = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RegistryError(
                            f"the model registry {self.root} is busy: another process has "
                            f"held {LOCK_FILE} for over {LOCK_TIMEOUT:.0f} s; try again later"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(handle)  # releases the lock

    def _add(
        self, source: Path, *, n_images: int, metrics: dict, parent: str | None, note: str
    ) -> ModelVersion:
        with self._locked():
            state = self._load()
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(
                prefix=".incoming.pt.", suffix=".tmp", dir=self.versions_dir
            )
            try:
                with os.fdopen(handle, "wb") as out:
                    digest = _copy_hashing(source, out)
                os.chmod(temporary, 0o644)
                version_id, target = self._claim(state, Path(temporary))
            finally:
                Path(temporary).unlink(missing_ok=True)
            version = ModelVersion(
                id=version_id,
                path=target,
                created=_now(),
                n_images=n_images,
                metrics=_json_safe(dict(metrics)),
                parent=parent,
                note=note,
                sha256=digest,
            )
            state.versions.append(version)
            state.selected = version_id
            self._save(state)
        return version

    def _claim(self, state: _State, temporary: Path) -> tuple[str, Path]:
        """Give the copied file the next free id's name without replacing any existing file."""
        while True:
            version_id = self._next_id(state)
            target = self.versions_dir / f"{version_id}.pt"
            try:
                os.link(temporary, target)  # fails if the target exists: never overwrites
            except FileExistsError:
                continue  # taken by someone outside the lock; _next_id now sees it
            except OSError:  # no hard links on this file system: check, then rename
                if target.exists():
                    continue
                os.replace(temporary, target)
            return version_id, target

    def _next_id(self, state: _State) -> str:
        """A fresh "v<n>" above every recorded id and every file already in versions/."""
        taken = [v.id for v in state.versions]
        if self.versions_dir.is_dir():
            taken += [p.name.split(".")[0] for p in self.versions_dir.iterdir()]
        numbers = [int(m.group(1)) for t in taken if (m := _VERSION_ID.fullmatch(t))]
        return f"v{max(numbers, default=0) + 1}"

    def _check(self, version: ModelVersion) -> ModelVersion:
        """``version`` with its file's sha256 (checked against the stored one when there is one)."""
        if version.id == BUNDLED_ID:
            return version
        try:
            digest = _file_sha256(version.path)
        except FileNotFoundError:
            return version  # loading it reports the missing file
        except OSError as error:
            raise RegistryError(
                f"cannot read the model file {version.path} of {version.id}: {error}"
            ) from error
        if version.sha256 is None:
            return dataclasses.replace(version, sha256=digest)
        if digest != version.sha256:
            raise RegistryError(
                f"the model file {version.path} ({version.id}) changed on disk since it was "
                f"published: its content no longer matches the sha256 in {self.file}, so it was "
                "not used (the file is kept as it is). Choose another version, or add a good "
                "copy of the model as a new version."
            )
        return version

    def _remember_hash(self, version: ModelVersion) -> None:
        """Store the sha256 of an entry written without one (best effort, logged on failure)."""
        try:
            with self._locked():
                state = self._load()
                stored = [v for v in state.versions if v.id == version.id and v.sha256 is None]
                if stored and stored[0].path == version.path:
                    state.replace(dataclasses.replace(stored[0], sha256=version.sha256))
                    self._save(state)
        except (OSError, RegistryError) as error:
            logger.warning(
                "could not store the sha256 of %s in %s: %s", version.id, self.file, error
            )

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

    def _tidy(self) -> None:
        """Once per registry object: remove stale temporaries of interrupted writes."""
        if self._tidied:
            return
        self._tidied = True
        for folder in (self.root, self.versions_dir):
            if folder.is_dir():
                remove_stale_temporaries(folder)

    def _load(self) -> _State:
        self._tidy()
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
            sha256 = entry.get("sha256")
            if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
                raise ValueError(f"sha256 {sha256!r} is not a hex digest")
            version = ModelVersion(
                id=str(entry["id"]),
                path=self.root / file,
                created=str(entry["created"]),
                n_images=int(entry.get("n_images", 0)),
                metrics=dict(entry.get("metrics") or {}),
                parent=None if entry.get("parent") is None else str(entry["parent"]),
                note=str(entry.get("note", "")),
                sha256=sha256,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
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


def _copy_hashing(source: Path, out: IO[bytes]) -> str:
    """Copy ``source`` into ``out`` (flushed and synced) and return the sha256 of the bytes."""
    hasher = hashlib.sha256()
    with source.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return hasher.hexdigest()
