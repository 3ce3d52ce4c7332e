"""Both command lines explain themselves: help and default of every option, ``--version``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from importlib import metadata

import pytest

from napari_nfdp.cli import build_parser as nfdp_parser
from napari_nfdp.cli import main as nfdp_main
from training.__main__ import build_parser as training_parser
from training.__main__ import main as training_main

PARSERS = {"nfdp": nfdp_parser, "python -m training": training_parser}


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"sub-command {choice.dest} has no help"
            for sub in action.choices.values():
                yield from _commands(sub)


def _shown(default: object) -> str:
    return " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)


@pytest.mark.parametrize("name", PARSERS)
def test_every_option_has_help_that_names_its_default(name):
    checked = 0
    for parser in _commands(PARSERS[name]()):
        text = " ".join(parser.format_help().split())
        assert "default: None" not in text and "default: False" not in text, parser.prog
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), f"{where} has no help"
            help_text = " ".join(formatter._expand_help(action).split())
            default = action.default
            optional = bool(action.option_strings) and not action.required
            if not optional or action.nargs == 0:  # positional, required, flag, help, version
                continue
            checked += 1
            if default is None:  # what "not given" means is said in words
                assert "(default: " in help_text, f"{where} does not say what its default is"
            else:
                assert f"default: {_shown(default)}" in help_text, f"{where}: {help_text}"
    assert checked >= (4 if name == "nfdp" else 30)  # the walk reached every command


@pytest.mark.parametrize("main", [nfdp_main, training_main])
def test_version_names_the_package_and_torch(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"napari-nfdp {metadata.version('napari-nfdp')} (torch ")
    assert metadata.version("torch") in out
