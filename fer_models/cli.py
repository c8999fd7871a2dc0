"""What every command line of the project shares: the exit code for bad input, the program name
as the user typed it, and where ``--data`` comes from when it is not given.

Every command that reads FER2013 takes ``--data PATH`` and, without it, falls back to
``$FER2013_CSV``, then ``data/fer2013.csv``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog=prog("fer_models.audit"))
    >>> add_data_argument(parser)
    >>> parser.parse_args(["--data", "x.csv"]).data
    'x.csv'
    >>> str(resolve_data_path("no/such/file.csv"))
    Traceback (most recent call last):
      ...
    fer_models.data.DataError: no/such/file.csv (from --data) does not exist. ...
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable

EXIT_BAD_INPUT = 2                 # bad input: one line on stderr, nothing computed
DATA_ENV = "FER2013_CSV"
DEFAULT_DATA = Path("data/fer2013.csv")

__all__ = ["EXIT_BAD_INPUT", "DATA_ENV", "DEFAULT_DATA", "prog", "add_data_argument",
           "positive_int", "resolve_data_path"]


def prog(module: str) -> str:
    """The program name for ``--help`` and usage lines: ``python -m MODULE`` when run that way,
    the console script's name (``fer-train``, ...) when run through it."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name.removesuffix(".__main__") == module:
        return f"python -m {module}"
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if script and script in _console_scripts(module):
        return script
    return f"python -m {module}"


def _console_scripts(module: str) -> set[str]:
    """The installed console scripts that run ``module:main`` (from the package's metadata)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="console_scripts") if ep.value == f"{module}:main"}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the error into a usage line and exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def add_data_argument(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--data PATH``, the same flag and fallbacks in every command."""
    parser.add_argument("--data", metavar="PATH",
                        help=f"fer2013.csv(.gz) or an image-folder root{what}; default: "
                             f"${DATA_ENV}, else {DEFAULT_DATA}")


def resolve_data_path(cli: str | None, candidates: Iterable[tuple[str | None, str]] = ()) -> Path:
    """The data file to read: ``--data``, then ``candidates`` ((value, where it came from) pairs,
    e.g. a space file's ``data``), then ``$FER2013_CSV``, then ``data/fer2013.csv``. The first
    one given must exist; raises :class:`fer_models.data.DataError` naming it and its origin."""
    from .data import DataError

    ordered = [(cli, "--data"), *candidates, (os.environ.get(DATA_ENV), f"${DATA_ENV}"),
               (str(DEFAULT_DATA), "the default")]
    value, origin = next((v, o) for v, o in ordered if v)
    path = Path(value)
    if not path.exists():
        raise DataError(
            f"{path} (from {origin}) does not exist. FER2013 is the Kaggle 'Challenges in "
            "Representation Learning: Facial Expression Recognition Challenge' file "
            f"fer2013.csv: download it and pass --data PATH, set ${DATA_ENV}, or put it "
            f"at {DEFAULT_DATA}.")
    return path


MAX_ERROR_CHARS = 600


def error_line(error) -> str:
    """``error: <message>`` as one short line: line breaks folded, an overlong message (a whole
    value quoted back) cut in the middle, keeping its start (file, key) and its end. The hint after
    the last ``"; "`` is kept whole while 100 characters of the start still fit: it may be a
    command to copy.

    >>> line = error_line("space.yaml: params.lr: must be [low, high], got " + "[1, 2] " * 200)
    >>> len(line) <= MAX_ERROR_CHARS + 15, line[:40]
    (True, 'error: space.yaml: params.lr: must be [l')
    >>> hint = "fetch it again with python -m search.weights " + "/a-long-path" * 20 + " --force"
    >>> error_line("blob " + "/cache" * 100 + " is corrupt; " + hint).endswith("; " + hint)
    True
    """
    text = " ".join(str(error).split())
    if len(text) > MAX_ERROR_CHARS:
        head, sep, hint = text.rpartition("; ")
        if not sep or len(hint) > MAX_ERROR_CHARS - 100:
            head, sep, hint = text[:-195], "", text[-195:]
        text = f"{head[:MAX_ERROR_CHARS - len(sep + hint) - 5]} ... {sep}{hint}"
    return f"error: {text}"

