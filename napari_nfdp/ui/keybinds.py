"""The one list of the dock widget's keyboard shortcuts, bound on the napari viewer.

Keys are chosen not to clash with napari's own defaults (e.g. ``V`` toggles layer visibility,
``Ctrl+S`` saves layers); each shortcut calls the widget method of the same name.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shortcut:
    """A key (napari key-binding syntax), the widget method it calls, and what it does."""

    key: str
    action: str
    description: str

    @property
    def text(self) -> str:
        """The key as people read it, e.g. "Shift+D"."""
        return self.key.replace("Control", "Ctrl").replace("-", "+")


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("Shift-D", "detect", "Detect landmarks"),
    Shortcut("Control-Z", "undo", "Undo the last point edit"),
    Shortcut("Control-Shift-Z", "redo", "Redo the point edit"),
    Shortcut("Shift-R", "reset_selected", "Reset the selected points to the model"),
    Shortcut("Shift-H", "toggle_visible", "Mark the selected points not visible / visible"),
    Shortcut("Shift-L", "toggle_labels", "Show or hide the vertebra labels"),
    Shortcut("Shift-S", "save", "Save the annotation now"),
    Shortcut("PageDown", "next_image", "Next image of the folder"),
    Shortcut("PageUp", "previous_image", "Previous image of the folder"),
)


def shortcut_text(action: str) -> str:
    """The key text of the shortcut for a widget method, "" when it has none."""
    return next((s.text for s in SHORTCUTS if s.action == action), "")


def bind_shortcuts(viewer: Any, target: object) -> Callable[[], None]:
    """Bind every shortcut on ``viewer`` to ``target``'s methods; return a function unbinding them.

    The bindings hold ``target`` weakly, so a closed widget is not kept alive by the viewer;
    unbinding restores whatever the keys did before.
    """
    ref = weakref.ref(target)
    previous: dict[str, Any] = {}

    def make_handler(action: str) -> Callable[[Any], None]:
        def handler(_viewer: Any) -> None:
            widget = ref()
            if widget is not None:
                getattr(widget, action)()

        handler.__doc__ = next(s.description for s in SHORTCUTS if s.action == action)
        return handler

    for shortcut in SHORTCUTS:
        previous[shortcut.key] = viewer.bind_key(
            shortcut.key, make_handler(shortcut.action), overwrite=True
        )

    def unbind() -> None:
        for key, func in previous.items():
            viewer.bind_key(key, func, overwrite=True)
        previous.clear()

    return unbind
