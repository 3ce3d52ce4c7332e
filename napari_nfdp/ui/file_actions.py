"""Saving and exporting in the dock: Save, the annotation folder, autosave writes, the
landmark CSV, the Cobb report and 3D Slicer markups over a folder.

:class:`FileActions` is a base of the dock widget; what may be written, and how, is
:mod:`napari_nfdp.io.films`, the report's columns :mod:`napari_nfdp.io.report`.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

from napari_nfdp.core.atomic import atomic_write
from napari_nfdp.io.annotations import Annotation, annotation_from_session, export_landmarks_csv
from napari_nfdp.io.films import Film, FilmShelf, autosave_refusal, write
from napari_nfdp.io.images import list_images
from napari_nfdp.io.markups import MARKUPS_SUFFIX, film_frame, write_markups
from napari_nfdp.io.report import REPORT_COLUMNS, annotation_report_row
from napari_nfdp.ui.edit_actions import EditActions


class FileActions(EditActions):
    """The saving and exporting half of the dock widget (see the module docstring)."""

    films: FilmShelf

    def save(self) -> Path | None:
        """Write the current film's annotation now (keeping a doubtful detection as it is)."""
        film = self._film(self._view) if self._view else None
        if film is None or film.session is None:
            self._say("Nothing to save yet: detect landmarks first.", "warning")
            return None
        if film.sidecar is None:
            self._say(autosave_refusal(film) or "", "warning")
            return None
        film.session.confirm()
        target = self._write(film, explicit=True)
        if target is not None:
            self._show(self._view)
        return target

    def set_annotation_folder(self, folder: str | Path | None) -> None:
        """Keep sidecars in ``folder`` instead of next to the images (None: next to them)."""
        self.autosaver.flush()
        outcomes = self.films.set_folder(Path(folder) if folder else None)
        where = str(folder) if folder else "next to the images"
        self.folder_label.setText(where)
        self.folder_label.setToolTip(where)
        if self._view is not None:
            self._show(self._view)
        self._say(f"Annotations are saved {'in ' if folder else ''}{where}.")
        for outcome in outcomes:  # what was already there was read first, never overwritten
            if outcome.message:
                self._say(outcome.message, outcome.level)

    def export_landmarks_csv(self, path: str | Path) -> Path | None:
        """Write the landmarks of every annotated image of the folder as one CSV."""
        annotations = self._folder_annotations()
        if not annotations:
            self._say("No annotated images to export yet.", "warning")
            return None
        try:
            written = export_landmarks_csv(path, [ann for _, ann in annotations])
        except OSError as error:
            self._say(f"Could not write {path}: {error}", "error")
            return None
        self._say(f"Exported the landmarks of {len(annotations)} image(s) to {written}.")
        return written

    def export_cobb_report(self, path: str | Path) -> Path | None:
        """Write one CSV line of Cobb angles per annotated image of the folder."""
        annotations = self._folder_annotations()
        if not annotations:
            self._say("No annotated images to report on yet.", "warning")
            return None
        table = [list(REPORT_COLUMNS)] + [annotation_report_row(n, a) for n, a in annotations]
        try:
            written = atomic_write(
                path, lambda handle: csv.writer(handle).writerows(table), text=True
            )
        except OSError as error:
            self._say(f"Could not write {path}: {error}", "error")
            return None
        self._say(f"Wrote the Cobb report of {len(annotations)} image(s) to {written}.")
        return written

    def export_markups(self, folder: str | Path) -> list[Path]:
        """Write 3D Slicer markups, ``<film stem>.mrk.json`` in ``folder``, for every annotated
        image of the folder (landmarks, Cobb lines and angles, LPS mm); return the files."""
        annotations = self._folder_annotations()
        if not annotations or self._view is None:
            self._say("No annotated images to export yet.", "warning")
            return []
        film = self._film(self._view)
        images = {Path(f).name: Path(f) for f in self._view.folder()[0]}
        if film.path is not None:
            images.setdefault(film.path.name, film.path)
        written: list[Path] = []
        stems: set[str] = set()
        for name, ann in annotations:
            stem = Path(name).stem
            target = Path(folder) / ((name if stem in stems else stem) + MARKUPS_SUFFIX)
            stems.add(stem)
            try:
                frame = film_frame(images.get(name), ann.spacing)
                written.append(write_markups(target, ann, frame=frame))
            except (OSError, ValueError) as error:
                self._say(f"Could not write {target}: {error}", "error")
                return written
        self._say(
            f"Exported 3D Slicer markups of {len(written)} image(s) to {folder} "
            f"({', '.join(p.name for p in written[:3])}{' ...' if len(written) > 3 else ''})."
        )
        return written

    # -- saving --

    def _autosave(self, film: Film) -> None:
        self._write(film, explicit=False)

    def _write(self, film: Film, *, explicit: bool) -> Path | None:
        """Write a film's sidecar atomically (autosave unless ``explicit``)."""
        if film.session is None:
            return None
        refusal = autosave_refusal(film)
        if refusal and not (explicit and film.sidecar is not None):
            self.save_label.setText(refusal)
            return None
        try:
            target = write(film)
        except (OSError, ValueError) as error:
            self._say(f"Could not save {film.sidecar}: {error}", "error")
            return None
        stamp = datetime.now().strftime("%H:%M:%S")
        self._show_saved(stamp, target)
        if explicit:
            self._say(f"Saved {target}.")
        return target

    def _known_images(self) -> list[Path]:
        """The image files the open images come from, and the other images of their folders."""
        images: list[Path] = []
        for view in self._views:
            film = self._film(view)
            if film.path is None:
                continue
            images += [Path(f) for f in view.folder()[0] or [film.path]]
            try:
                images += list_images(film.path.parent)
            except OSError:
                continue
        return list(dict.fromkeys(images))

    def _folder_annotations(self) -> list[tuple[str, Annotation]]:
        """(image name, annotation) of every saved image of the current folder."""
        view = self._view
        if view is None:
            return []
        self.autosaver.flush()
        film = self._film(view)
        paths = [Path(f) for f in view.folder()[0]] or ([film.path] if film.path else [])
        rows = self.films.saved_annotations(paths)
        if not paths and film.session is not None and film.session.is_measurement:
            ann = annotation_from_session(
                film.session, film.name, film.shape, film.spacing, film.spacing_source
            )
            rows.append((film.name, ann))
        return rows

    # -- small controls ---------------------------------------------------------------------------
