"""search.private_api: every private assumption holds on the installed Ray / Optuna /
tensorboardX, the checker names one that does not, the search refuses to start on it, and no
other module of search/ touches another library's private state."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def test_every_private_assumption_holds_on_the_installed_versions():
    from search.private_api import check

    assert check() == []


def test_the_checker_names_an_assumption_that_moved(monkeypatch):
    from ray.tune.schedulers import ASHAScheduler

    from search.private_api import check

    original = ASHAScheduler.__init__

    def renamed(self, *args, **kwargs):  # as a Ray release that renamed a private field would
        original(self, *args, **kwargs)
        self._time_attribute = self.__dict__.pop("_time_attr")

    monkeypatch.setattr(ASHAScheduler, "__init__", renamed)
    problems = check()
    assert len(problems) == 1 and problems[0].startswith("ASHAScheduler._time_attr changed in ray ")


def test_search_refuses_to_start_when_an_assumption_moved(tmp_path, monkeypatch, capsys, small_csv):
    from search import private_api
    from search.run import EXIT_UNTESTED_LIBRARY, main

    monkeypatch.setattr(private_api, "check", lambda: ["OptunaSearch._ot_trials changed in ray 9"])
    code = main(["spaces/smoke.yaml", "--data", str(small_csv), "--output", str(tmp_path),
                 "--name", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_UNTESTED_LIBRARY
    assert err == ["error: OptunaSearch._ot_trials changed in ray 9; install the tested versions "
                   "(pyproject.toml)"]
    assert not (tmp_path / "x").exists()  # nothing written


def test_private_attributes_are_read_only_in_the_quarantine():
    offenders = []
    for path in sorted((REPO / "search").glob("*.py")):
        if path.name == "private_api.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\._[a-z]", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("package", ["ray", "optuna", "tensorboardX"])
def test_pyproject_ranges_are_the_tested_minor_versions(package):
    """pyproject allows exactly the minor release private_api.check passes on, and the installed
    version is in it."""
    import importlib.metadata
    import tomllib

    from search.private_api import TESTED

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(Requirement(d) for d in deps if Requirement(d).name.lower() == package.lower())
    tested = Version(TESTED[package] + ".0")
    assert tested in spec.specifier
    assert Version(f"{tested.major}.{tested.minor + 1}.0") not in spec.specifier
    assert Version(f"{tested.major}.{tested.minor}.99") in spec.specifier
    assert Version(importlib.metadata.version(package)) in spec.specifier
