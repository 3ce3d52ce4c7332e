"""Long work in napari's activity dock: one :class:`napari.utils.progress` bar per job.

A bar is created, moved and closed on the GUI thread only (from a job's Qt signals), never
from a worker thread. napari's activity dock redraws (and processes pending Qt events) on
every change, so the description changes only when the text does.
"""

from __future__ import annotations

from napari.utils import cancelable_progress, progress


class ActivityBar:
    """A progress bar in napari's activity dock; ``cancelable`` gives it a Cancel button.

    Nothing happens once it is closed (closing twice is harmless), so late job signals
    need no care.
    """

    def __init__(self, description: str, total: int = 0, *, cancelable: bool = False) -> None:
        kind = cancelable_progress if cancelable else progress
        self._bar: progress | None = kind(total=total, desc=description)
        self._description = description

    @property
    def cancel_requested(self) -> bool:
        """True once someone pressed Cancel on the bar in the activity dock."""
        return bool(getattr(self._bar, "is_canceled", False))

    @property
    def closed(self) -> bool:
        return self._bar is None

    def show(self, value: int, total: int, description: str | None = None) -> None:
        """Move the bar to ``value`` of ``total`` (0: busy, no known end)."""
        # each change may process pending Qt events (napari redraws the bar), and with them
        # the job's end, which closes the bar: look again before every change
        if self._bar is not None and description and description != self._description:
            self._description = description
            self._bar.set_description(description)
        if self._bar is not None and self._bar.total != total:
            self._bar.total = total
        if self._bar is not None and value != self._bar.n:
            self._bar.update(value - self._bar.n)

    def close(self) -> None:
        """Take the bar out of the activity dock."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
