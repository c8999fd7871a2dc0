"""Reading the text files people hand to the tools (spaces, config.json, ensemble.json, run.json)
so that a bad one is one clear line naming the file, never a decoder traceback.

* not UTF-8 text: the byte offset and what to do;
* YAML: a key given twice in one mapping is refused, naming the key and both lines (PyYAML
  silently keeps the last one);
* JSON: the line and column of the syntax error;
* not a regular file (a FIFO or a device would block or never end), larger than
  ``MAX_TEXT_BYTES``, nested deeper than the parser can follow, or a YAML file whose aliases
  expand to more than ``MAX_YAML_VALUES`` values (a "billion laughs" file is a few lines):
  refused before it is read whole.

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
import stat
from pathlib import Path

import yaml

__all__ = ["InputFileError", "MAX_TEXT_BYTES", "MAX_YAML_VALUES", "read_text", "load_yaml",
           "load_json", "load_json_object", "require_regular_file"]

# Spaces, configs and run records are kilobytes; these bounds are far above any real one.
MAX_TEXT_BYTES = 16 * 2**20
MAX_YAML_VALUES = 100_000


class InputFileError(ValueError):
    """A file that cannot be read as what it should be; the message starts with its path."""


def require_regular_file(path: str | os.PathLike, error=InputFileError) -> os.stat_result:
    """``path``'s stat if it is a regular file (after links); else ``error`` saying what it is.
    A FIFO or a device is refused before it is opened: reading one blocks or never ends."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except PermissionError:
        raise error(f"{path}: permission denied") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        what = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else \
            "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        raise error(f"{path}: is {what}, not a regular file; save the content to a file")
    return st


def read_text(path: str | os.PathLike) -> str:
    path = Path(path)
    size = require_regular_file(path).st_size
    if size > MAX_TEXT_BYTES:
        raise InputFileError(f"{path}: {size:,} bytes, more than the {MAX_TEXT_BYTES:,} this "
                             "tool reads as a text file; is it the right file?")
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
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            values = _expanded_size(node, {})
            if values > MAX_YAML_VALUES:
                raise InputFileError(f"{path}: its aliases (*name) expand to more than "
                                     f"{MAX_YAML_VALUES:,} values; write the values out")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _DuplicateKey as d:
        raise InputFileError(f"{path}: key {d.key!r} appears twice (lines {d.first} and "
                             f"{d.again}); keep one") from None
    except _SelfReference:
        raise InputFileError(f"{path}: an alias (*name) refers to the value that holds it; "
                             "write the values out") from None
    except yaml.YAMLError as e:
        raise InputFileError(f"{path}: not valid YAML: {e}".replace("\n", " ")) from None
    except InputFileError:
        raise
    except ValueError as e:  # an int of over 4,300 digits, a date such as 2026-13-45
        raise InputFileError(_unreadable_value(path, e)) from None
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to read") from None


class _SelfReference(Exception):
    pass


def _expanded_size(node, sizes: dict) -> int:
    """How many values ``node`` stands for once every alias is expanded (each shared node
    counted once per use); _SelfReference for a node that contains itself."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise _SelfReference
        return sizes[key]
    sizes[key] = None  # being counted
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        total = 1
    sizes[key] = min(total, MAX_YAML_VALUES + 1)  # capped: the sum cannot grow without bound
    return sizes[key]


def _unreadable_value(path, error: ValueError) -> str:
    if "digits" in str(error):  # Python reads no integer of over 4,300 digits
        return f"{path}: a number too long to read (over 4,300 digits)"
    return f"{path}: a value that cannot be read ({' '.join(str(error).split())[:200]})"


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
    except ValueError as e:  # an int of over 4,300 digits (sys.set_int_max_str_digits)
        raise InputFileError(_unreadable_value(path, e)) from None
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to read") from None
