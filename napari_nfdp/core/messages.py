"""Errors as short text for the messages people read (dock, notes, CSV status cells)."""

from __future__ import annotations


def describe_error(error: BaseException, name: str = "") -> str:
    """An error's message on its own (its type's name when it has none), without a leading
    ``"<name>: "`` that the surrounding message already gives."""
    text = str(error).strip()
    if name:
        text = text.removeprefix(f"{name}: ")
    return text or type(error).__name__
