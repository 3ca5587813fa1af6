"""REST ``options`` -> ``RunConfig``, through the CLI's own parsers and ``config_from_args``.

The options are the CLI's long option names with ``_`` for ``-`` (``face_index``, ``video_quality``,
...). They are turned back into command-line words and parsed by the same parent parsers as
``masquerade swap``, so a value the CLI refuses is refused here with the same reason, naming the option.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from masquerade.config import RunConfig
from masquerade.errors import UsageError

SERVER_ONLY = {
    "models_dir": "the studio uses the server's model cache",
    "map": "per-person sources are not offered by the studio yet (use the CLI or the Python API)",
}
"""Options a client may not set: they would name folders outside the data dir."""
FILE_OPTIONS = ("reference",)
"""Options that take a file: a client gives a file id, the server the file's stored path."""


class OptionError(UsageError):
    """An invalid REST option; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        # A message that starts with the option's name reads on from it ("option x must be ...").
        super().__init__(f"option {message}" if message.startswith(option) else f"option {option}: {message}")
        self.option = option


class _Parser(argparse.ArgumentParser):
    """Raises instead of printing and exiting: the studio answers 422."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parser() -> _Parser:
    from masquerade.cli.parser import swap_option_parsers

    return _Parser(add_help=False, parents=swap_option_parsers(), allow_abbrev=False)


def option_names() -> dict[str, argparse.Action]:
    """Every swap option by its REST name (``face_index``), with its parser action."""
    names = {}
    for action in _parser()._actions:
        long = [s for s in action.option_strings if s.startswith("--")]
        if long:
            names[long[0][2:].replace("-", "_")] = action
    return names


def run_config(options: Mapping[str, Any], file_path: Callable[[str], Path | None],
               kinds: Iterable[str | None] = (None,)) -> RunConfig:
    """Validate ``options`` as ``masquerade swap`` would and build the run's config.

    ``file_path`` maps a file id to its stored path (None when there is no such file); ``kinds`` are
    the kinds of the targets the options will meet ("image", "video"; None: unknown), so an option of
    the other kind is refused as the CLI refuses it. Raises ``OptionError`` naming the first bad option.
    """
    actions = option_names()
    argv: list[str] = []
    for name, value in options.items():
        action = actions.get(name)
        if action is None:
            raise OptionError(name, "unknown option (use the CLI's long option names with _ for -)")
        if name in SERVER_ONLY:
            raise OptionError(name, f"not available in the studio: {SERVER_ONLY[name]}")
        flag = next(s for s in action.option_strings if s.startswith("--"))
        if value is None:
            continue
        if action.nargs == 0:  # a switch: true or false
            if not isinstance(value, bool):
                raise OptionError(name, f"expected true or false, got {value!r}")
            if value:
                argv.append(flag)
            continue
        if isinstance(value, (dict, list, bool)):
            raise OptionError(name, f"expected a single value, got {value!r}")
        if name in FILE_OPTIONS:
            path = file_path(str(value))
            if path is None:
                raise OptionError(name, f"no file with id {str(value)[:40]!r}")
            value = str(path)
        argv.append(f"{flag}={value}")
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        raise _named(str(error), actions) from None
    from masquerade.cli.parser import config_from_args
    from masquerade.config import config_problems

    config = config_from_args(args)
    for kind in dict.fromkeys(kinds):
        for problem in config_problems(config, kind):  # type: ignore[arg-type]
            name = problem.option.lstrip("-").replace("-", "_")
            message = _rest_names(problem.message, actions)
            raise OptionError(name, message)
    return config


def _rest_names(message: str, actions: dict[str, argparse.Action]) -> str:
    """``--video-quality`` in a CLI message as the REST name ``video_quality``."""
    flags = {flag: name for name, action in actions.items() for flag in action.option_strings}
    return re.sub(r"--[a-z0-9-]+", lambda m: flags.get(m.group(0), m.group(0)), message)


def _named(message: str, actions: dict[str, argparse.Action]) -> OptionError:
    """argparse's "argument --face-index: invalid int value: 'x'" as an error naming ``face_index``."""
    if message.startswith("argument "):
        flags, _, reason = message[len("argument "):].partition(": ")
        for name, action in actions.items():
            if any(flag in action.option_strings for flag in flags.split("/")):
                return OptionError(name, reason)
    return OptionError("options", message)
