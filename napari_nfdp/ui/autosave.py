"""Autosave off the drag path: a changed film is written a moment after the last change.

Debounced, so a drag never waits for the disk, and at once on ``flush`` (before stepping,
closing, exports, fine-tuning). What may be written, and how, is :mod:`napari_nfdp.io.films`.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer

from napari_nfdp.io.films import Film

AUTOSAVE_DELAY_MS = 300


class Autosaver(QObject):
    """Calls ``save(film)`` for changed films a moment after the last change, or on flush."""

    def __init__(self, save: Callable[[Film], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._save = save
        self._pending: dict[str, Film] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)

    def schedule(self, film: Film) -> None:
        """Save ``film`` soon (each new change restarts the wait)."""
        self._pending[film.key] = film
        self._timer.start()

    def flush(self) -> None:
        """Save every pending film now."""
        self._timer.stop()
        pending, self._pending = list(self._pending.values()), {}
        for film in pending:
            if film.dirty:
                self._save(film)
