"""What ``nfdp`` and ``python -m training`` share: option help with defaults, ``--version``."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help, except where X says nothing.

    A default of None or False (an unset option, a flag) adds nothing: such help explains the
    default in words, and so does any help that already mentions "default".
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or action.required
            or not action.option_strings
        ):
            return text
        if isinstance(default, list | tuple):
            return f"{text} (default: {' '.join(map(str, default))})"
        return super()._get_help_string(action)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def version_text() -> str:
    """e.g. "napari-nfdp 0.1.0 (torch 2.13.0+cpu, Python 3.11.9)"; torch is not imported."""
    from napari_nfdp import __version__

    torch = _installed("torch") or "not installed"
    own = _installed("napari-nfdp") or __version__
    return f"napari-nfdp {own} (torch {torch}, Python {platform.python_version()})"


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_text` to stdout and exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show the napari-nfdp, torch and Python versions and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_text(), file=sys.stdout)
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` option."""
    parser.add_argument("--version", action=_VersionAction, dest=argparse.SUPPRESS)
