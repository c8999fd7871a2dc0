"""The trust boundary of ``--resume``: whose files may be unpickled.

``--resume`` continues a search with ``ray.tune.Tuner.restore``, which unpickles Ray Tune's saved
state from the experiment folder (``tuner.pkl``, the searcher's and the experiment's state, each
trial's ``params.pkl``). Unpickling runs code, so a folder is resumed only when nobody else could
have written those files: the folder, every folder on the way to them and every state file must
be owned by the current user and not writable by group or others, as ssh treats a private key.
Everything else this tool reads back from a results folder is JSON, YAML, CSV or safetensors.

    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, "tuner.pkl"), "wb").close()
    >>> os.chmod(d, 0o700); os.chmod(os.path.join(d, "tuner.pkl"), 0o666)
    >>> untrusted_state(d)[0].split(": ", 1)[1]
    'writable by group or others'
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["STATE_PATTERNS", "UntrustedFolder", "check_resume_trust", "untrusted_state"]

# What Tuner.restore reads and unpickles (Ray Tune's names), in the folder and in trial folders.
STATE_PATTERNS = ("*.pkl", "experiment_state-*.json", "search_gen_state-*.json")


class UntrustedFolder(ValueError):
    """A folder --resume refuses: the message names the file and why."""


def _problem(path: Path) -> str | None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by group or others"
    return None


def untrusted_state(experiment: str | Path) -> list[str]:
    """``"<path>: <why>"`` for the folder and each state file --resume would unpickle that
    someone other than the current user could have written; [] when all are trusted."""
    root = Path(experiment)
    paths = [root] + [p for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink()]
    for pattern in STATE_PATTERNS:
        paths += sorted(root.glob(pattern)) + sorted(root.glob(f"*/{pattern}"))
    problems = []
    for path in paths:
        why = _problem(path)
        if why:
            problems.append(f"{path}: {why}")
    return problems


def check_resume_trust(experiment: str | Path) -> None:
    """Raise :class:`UntrustedFolder` (naming the first offending file) unless every file
    ``--resume`` would unpickle could only have been written by the current user."""
    problems = untrusted_state(experiment)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UntrustedFolder(f"{problems[0]}{more}: --resume unpickles Ray Tune's state from "
                              "this folder, so it must be yours alone (chmod go-w, or start a "
                              "new search)")
