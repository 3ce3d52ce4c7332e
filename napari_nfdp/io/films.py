"""Films the dock knows and their sidecars: the save and restore rules, without napari.

A :class:`Film` is one radiograph the dock has shown: where its sidecar goes, its landmark
session (None before the first detection) and whether autosave may write. The rules:

* opening a film reads its sidecar first; one that cannot be read, or was made for an image
  of another size, is left untouched and blocks autosave (an explicit Save keeps the old file
  as ``.unreadable`` and writes a new one);
* a doubtful detection that nobody confirmed (``session.doubt``) is never autosaved;
* a sidecar that already exists where annotations go (a newly chosen folder too) is read
  before anything is written there;
* an unreadable sidecar is copied byte for byte and blocks autosave; a read-only one too;
* a film without a sidecar but with 3D Slicer markups beside it (``<stem>.mrk.json``) takes
  its landmarks from them (points placed or moved in Slicer are the person's); they are saved
  as the sidecar at the next edit or Save, the markups file is never written.

The dock's :class:`~napari_nfdp.ui.autosave.Autosaver` decides *when* to write.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from napari_nfdp.core.atomic import remove_stale_temporaries
from napari_nfdp.core.session import LandmarkSession
from napari_nfdp.io.annotations import (
    SIDECAR_SUFFIX,
    Annotation,
    annotation_from_session,
    read_annotation,
    session_from_annotation,
    sidecar_path,
    write_annotation,
)
from napari_nfdp.io.markups import find_markups, read_film_markups

logger = logging.getLogger(__name__)


@dataclass
class Film:
    """One radiograph: its file, size and spacing, its session and its sidecar state."""

    key: str
    name: str
    shape: tuple[int, int]
    path: Path | None = None
    spacing: tuple[float, float] | None = None
    session: LandmarkSession | None = None
    sidecar: Path | None = None
    blocked: str | None = None  # why autosave must not overwrite the sidecar
    saved_revision: int = -1
    spacing_source: str | None = None  # the DICOM element the spacing came from

    @property
    def dirty(self) -> bool:
        """True when the session changed since it was last written."""
        return self.session is not None and self.session.revision != self.saved_revision


@dataclass(frozen=True)
class Restored:
    """What reading a film's sidecar gave: a session, or a message (and maybe a block)."""

    session: LandmarkSession | None = None
    message: str | None = None
    level: str = "info"
    blocked: str | None = None


def restore(film: Film) -> Restored:
    """Read a film's sidecar (if it has one) into a session; never raises.

    An unreadable sidecar, whatever is wrong with it, is copied byte for byte beside itself
    (``<name>.unreadable``) and blocks autosave; so does a read-only one. Without a sidecar,
    3D Slicer markups beside the film are read (:func:`restore_markups`).
    """
    target = film.sidecar
    if target is None or not target.is_file():
        return restore_markups(film)
    try:
        annotation = read_annotation(target)
        session = session_from_annotation(annotation)
    except (OSError, ValueError) as error:
        try:
            backup = keep_copy(target)
        except OSError as copy_error:
            logger.warning("could not copy the unreadable %s: %s", target, copy_error)
            backup = None
        kept = f"; a copy is kept as {backup.name}" if backup else ""
        return Restored(
            message=f"Could not read the saved annotation {target.name}: {error}. It was left "
            f"untouched and autosave is off for this image{kept}. Save writes a new one.",
            level="error",
            blocked="the saved annotation could not be read",
        )
    if tuple(annotation.image_shape) != film.shape:
        return Restored(
            message=f"{target.name} was made for an image of {annotation.image_shape[0]} x "
            f"{annotation.image_shape[1]} pixels, not {film.shape[0]} x {film.shape[1]}: it was "
            "left untouched and autosave is off for this image.",
            level="error",
            blocked="the saved annotation is for an image of another size",
        )
    restored = (
        f"Restored {len(session.names)} landmarks of {film.name} ({session.human_count} "
        f"corrected by you, {session.hidden_count} not visible) from {target.name}."
    )
    if is_read_only(target):
        return Restored(
            session,
            f"{restored} The file is read-only: it is respected, autosave is off for it.",
            "warning",
            blocked=f"{target.name} is read-only",
        )
    return Restored(session, restored)


def restore_markups(film: Film) -> Restored:
    """Read the 3D Slicer markups beside a film (if any) into a session; never raises.

    A markups file that cannot be used is left alone with a warning; it blocks nothing.
    """
    markups = find_markups(film.path) if film.path is not None else None
    if markups is None:
        return Restored()
    try:
        annotation, landmarks = read_film_markups(
            markups, film.path, image_shape=film.shape, spacing=film.spacing
        )
        session = session_from_annotation(annotation)
    except (OSError, ValueError) as error:
        return Restored(
            message=f"Could not use the 3D Slicer markups {markups.name}: {error}. The file "
            "was left untouched.",
            level="warning",
        )
    notes = "".join(f" Note: {note}." for note in landmarks.notes)
    saved_as = f" Your corrections are saved as {film.sidecar.name}." if film.sidecar else ""
    return Restored(
        session,
        f"Loaded {len(session.names)} landmarks of {film.name} from the 3D Slicer markups "
        f"{markups.name} ({session.human_count} placed or moved by a person, "
        f"{session.hidden_count} not visible).{saved_as}{notes}",
    )


def is_read_only(path: Path) -> bool:
    """True when a file has no write permission bit at all (e.g. mode 0444)."""
    return not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def keep_copy(path: Path) -> Path:
    """Copy a file byte for byte to ``<name>.unreadable`` (``.unreadable-2``... when such a
    copy with other bytes exists); return the copy."""
    data = path.read_bytes()
    for n in range(1, 1000):
        copy = path.with_name(path.name + (".unreadable" if n == 1 else f".unreadable-{n}"))
        if copy.is_file() and copy.read_bytes() == data:
            return copy
        if not copy.exists():
            copy.write_bytes(data)
            return copy
    raise OSError(f"too many copies of {path.name}")


def write(film: Film) -> Path:
    """Write a film's session to its sidecar atomically.

    Raises OSError (ReadOnlyFileError for a read-only sidecar) or ValueError when it cannot
    be written; the caller says so.
    """
    target, session = film.sidecar, film.session
    if target is None or session is None:
        raise ValueError("nothing to save")
    annotation = annotation_from_session(
        session, film.name, film.shape, film.spacing, film.spacing_source
    )
    write_annotation(target, annotation)
    film.blocked = None
    film.saved_revision = session.revision
    return target


def autosave_refusal(film: Film) -> str | None:
    """Why autosave must not write this film now (None: it may)."""
    if film.sidecar is None:
        return (
            "Not saved: this image has no file on disk. Choose an annotation folder to keep "
            "the corrections."
        )
    if film.blocked:
        return f"Autosave is off: {film.blocked}. Save writes a new one."
    if film.session is not None and not film.session.is_measurement:
        return "Not saved yet: check the points, then correct them or press Save."
    return None


class FilmShelf:
    """Every film the dock has shown, by file (or layer), and where their sidecars go."""

    def __init__(self) -> None:
        self.annotation_folder: Path | None = None
        self._films: dict[str, Film] = {}
        self._cleaned: set[Path] = set()

    def film(
        self,
        key: str,
        name: str,
        shape: tuple[int, int],
        path: Path | None,
        spacing: tuple[float, float] | None,
        spacing_source: str | None = None,
    ) -> tuple[Film, Restored | None]:
        """The film under ``key``; a new one has its sidecar read (the Restored outcome)."""
        film = self._films.get(key)
        if film is not None:
            return film, None
        film = Film(key, name, shape, path, spacing, sidecar=self.sidecar_of(path, name))
        film.spacing_source = spacing_source if spacing else None
        self._films[key] = film
        return film, self._read(film)

    def _read(self, film: Film) -> Restored:
        """Take the film's session from its sidecar (after clearing stale temporaries)."""
        if film.sidecar is not None and film.sidecar.parent not in self._cleaned:
            self._cleaned.add(film.sidecar.parent)
            remove_stale_temporaries(film.sidecar.parent)
        restored = restore(film)
        film.session, film.blocked = restored.session, restored.blocked
        film.saved_revision = film.session.revision if film.session is not None else -1
        return restored

    def forget(self, film: Film) -> None:
        """Drop a film (its image was closed); opening it again reads its sidecar anew."""
        if self._films.get(film.key) is film:
            del self._films[film.key]

    def __contains__(self, film: Film) -> bool:
        return self._films.get(film.key) is film

    def sidecar_of(self, path: Path | None, name: str) -> Path | None:
        """Where a film's annotation is kept (None: nowhere, it has no file and no folder)."""
        if path is not None:
            return sidecar_path(path, self.annotation_folder)
        if self.annotation_folder is not None:
            return self.annotation_folder / f"{name}{SIDECAR_SUFFIX}"
        return None

    def set_folder(self, folder: Path | None) -> list[Restored]:
        """Keep sidecars in ``folder`` (None: next to the images), reading what is there first.

        A film whose sidecar already exists in the new place takes its landmarks from it (or
        is blocked when it cannot be read), exactly as when a film is opened; the others keep
        theirs and are written to the new place at their next save. Returns what was read.
        """
        self.annotation_folder = folder
        outcomes = []
        for film in self._films.values():
            film.sidecar = self.sidecar_of(film.path, film.name)
            if film.sidecar is not None and film.sidecar.exists():
                outcomes.append(self._read(film))
            else:
                film.blocked, film.saved_revision = None, -1
        return outcomes

    def saved_annotations(self, paths: list[Path]) -> list[tuple[str, Annotation]]:
        """(image name, annotation) of the films among ``paths`` that have a readable sidecar."""
        rows: list[tuple[str, Annotation]] = []
        for path in paths:
            target = sidecar_path(path, self.annotation_folder)
            if target.is_file():
                try:
                    rows.append((path.name, read_annotation(target)))
                except (OSError, ValueError, OverflowError, RecursionError):
                    logger.warning("skipped the unreadable annotation %s", target)
        return rows
