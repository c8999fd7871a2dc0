"""The search refusing bad input, in this process: the exit code and stderr of search.run, with
the checks every such refusal shares (Ray never started, nothing written)."""
from __future__ import annotations

import ray

from search.run import main as search_main


def run_search(space_text: str | bytes, tmp_path, data, capsys, args=()) -> tuple[int, str]:
    """Write ``space_text`` to ``tmp_path/space.yaml`` and run the search on it (``--name x``
    under ``tmp_path/results``): (exit code, stderr)."""
    space = tmp_path / "space.yaml"
    space.write_bytes(space_text.encode() if isinstance(space_text, str) else space_text)
    out = tmp_path / "results"
    code = search_main([str(space), "--data", str(data), "--output", str(out), "--name", "x", *args])
    err = capsys.readouterr().err
    assert not ray.is_initialized(), "Ray must not start for bad input"
    assert not (out / "x").exists(), "nothing may be written for bad input"
    return code, err
