"""Reading the text files people hand to the tools (spaces, config.json, ensemble.json, run.json)
so that a bad one is one clear line naming the file, never a decoder traceback.

* not UTF-8 text: the byte offset and what to do;
* YAML: a key given twice in one mapping is refused, naming the key and both lines (PyYAML
  silently keeps the last one);
* JSON: the line and column of the syntax error.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "space.yaml"
    >>> _ = path.write_text("params:\\n  lr: 0.1\\n  lr: 0.2\\n")
    >>> load_yaml(path)
    Traceback (most recent call last):
        ...
    fer_models.textfiles.InputFileError: ...space.yaml: key 'lr' appears twice (lines 2 and 3); keep one
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

__all__ = ["InputFileError", "read_text", "load_yaml", "load_json", "load_json_object"]


class InputFileError(ValueError):
    """A file that cannot be read as what it should be; the message starts with its path."""


def read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    try:
        raw = path.read_bytes()
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputFileError(f"{path}: not UTF-8 text (line {line}, byte {e.start}: {e.reason}); "
                             "save it as UTF-8") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a folder, not a file") from None
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: let PyYAML say so
                break
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        self.key, self.first, self.again = key, first, again


def load_yaml(path: str | os.PathLike):
    """Parse a UTF-8 YAML file, refusing duplicate keys; InputFileError says what and where."""
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as d:
        raise InputFileError(f"{path}: key {d.key!r} appears twice (lines {d.first} and "
                             f"{d.again}); keep one") from None
    except yaml.YAMLError as e:
        raise InputFileError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None


def load_json_object(path: str | os.PathLike) -> dict:
    """:func:`load_json` of a file that must hold one JSON object (a mapping)."""
    value = load_json(path)
    if not isinstance(value, dict):
        raise InputFileError(f"{path}: expected a JSON object {{...}}, got {type(value).__name__}")
    return value


def load_json(path: str | os.PathLike):
    """Parse a UTF-8 JSON file; InputFileError names the file and the line of the error."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputFileError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                             f"{e.msg})") from None
