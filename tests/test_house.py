"""The project's own rules, checked: imports flow one way with no cycle inside a package, the
docstring examples run, every command names itself as the user typed it, and a status or file
name of the experiment folder is written in one place only. None of these needs FER2013."""
from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fer_models", "search")


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that the file imports, at the top or inside a function."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    is_init = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_init else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}  # `from . import fast_csv`
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for p in (REPO / package).glob("*.py")}
    return {m for m in found if m in modules and m != module and m != package}


def _graph(package: str) -> dict[str, set[str]]:
    return {".".join(p.relative_to(REPO).with_suffix("").parts): _imports(p, package)
            for p in sorted((REPO / package).glob("*.py")) if p.name != "__init__.py"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package):
    graph = _graph(package)
    assert len(graph) > 5 and any(graph.values()), "the import graph came out empty"
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_fer_models_never_imports_search():
    for path in (REPO / "fer_models").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
        assert not [n for n in names if n == "search" or n.startswith("search.")], path


def _modules_with_examples() -> list[str]:
    out = []
    for package in PACKAGES:
        for info in pkgutil.iter_modules([str(REPO / package)]):
            if info.name != "__main__" and ">>>" in (REPO / package / f"{info.name}.py").read_text():
                out.append(f"{package}.{info.name}")
        if ">>>" in (REPO / package / "__init__.py").read_text():
            out.append(package)
    return sorted(out)


EXAMPLE_MODULES = _modules_with_examples()


def test_every_module_with_examples_is_run():
    assert len(EXAMPLE_MODULES) >= 10, EXAMPLE_MODULES


@pytest.mark.parametrize("module", EXAMPLE_MODULES)
def test_docstring_examples_run(module, monkeypatch):
    """Every ``>>>`` example in the packages runs, from the repository root, and none is skipped."""
    monkeypatch.chdir(REPO)
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(mod, module) if t.examples]
    assert tests, f"{module} has '>>>' but no example was found"
    skipped = [t.name for t in tests for e in t.examples if e.options.get(doctest.SKIP)]
    assert not skipped, f"examples marked +SKIP never run: {skipped}"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module} failed"


CONSOLE_SCRIPTS = {"fer-search": "search.run", "fer-train": "fer_models.train",
                   "fer-predict": "fer_models.predict", "fer-export": "fer_models.export",
                   "fer-audit": "fer_models.audit", "fer-report": "search.report",
                   "fer-seed-parity": "search.seed_parity", "fer-weights": "search.weights"}


def test_every_command_has_a_console_script():
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"{module}:main" for name, module in CONSOLE_SCRIPTS.items()}
    with_main = {f"{p.parent.name}.{p.stem}" for pkg in PACKAGES for p in (REPO / pkg).glob("*.py")
                 if re.search(r"^def main\(", p.read_text(), re.M)}
    assert with_main == set(CONSOLE_SCRIPTS.values())


@pytest.mark.parametrize("script", ["fer-train", "fer-report"])
def test_help_names_the_program_as_typed(script):
    """``fer-train --help`` says ``usage: fer-train``; ``python -m ...`` says that."""
    exe = Path(sys.executable).parent / script
    if not exe.exists():
        pytest.fail(f"{exe} is not installed: pip install -e . installs the console scripts")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {script} "), proc.stdout[:200]
    module = CONSOLE_SCRIPTS[script]
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.stdout.startswith(f"usage: python -m {module} "), proc.stdout[:200]


def test_every_data_command_takes_data_and_its_fallbacks(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # seed_parity reads spaces/seed.yaml by default
    """--data everywhere, and without it $FER2013_CSV, named in the error."""
    from fer_models.audit import main as audit_main
    from fer_models.train import main as train_main
    from search.seed_parity import main as seed_parity_main

    monkeypatch.setenv("FER2013_CSV", str(tmp_path / "env.csv"))
    for main in (audit_main, train_main, seed_parity_main):
        assert main([]) == 2
        assert "env.csv (from $FER2013_CSV) does not exist" in capsys.readouterr().err
        assert main(["--data", str(tmp_path / "flag.csv")]) == 2
        assert "flag.csv (from --data) does not exist" in capsys.readouterr().err


def _string_literals(path: Path) -> list[tuple[str, int]]:
    return [(n.value, n.lineno) for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_statuses_and_file_names_are_defined_once():
    """Outside search/experiment_folder.py no production module spells a status or a file name
    of the experiment folder as a literal (docstrings and help texts aside)."""
    from search.experiment_folder import STATUSES, ExperimentFolder

    names = set(STATUSES) | {ExperimentFolder.TRIALS, ExperimentFolder.SUMMARY,
                             ExperimentFolder.METRICS, ExperimentFolder.JOURNAL,
                             ExperimentFolder.ASHA_RUNGS, ExperimentFolder.RUN,
                             ExperimentFolder.BEST, ExperimentFolder.REPORT}
    offenders = []
    for path in sorted((REPO / "search").glob("*.py")) + sorted((REPO / "bench").glob("*.py")):
        if path.name == "experiment_folder.py":
            continue
        offenders += [f"{path.name}:{line} {value!r}" for value, line in _string_literals(path)
                      if value in names]
    assert not offenders, offenders


def test_a_test_files_tests_share_one_xdist_worker():
    """make test TEST_WORKERS=N relies on --dist loadgroup keeping a file's tests (and so its
    module-scoped search) on one worker (tests/conftest.py): checked with the installed pytest
    and pytest-xdist and make test's flags (--no-loadscope-reorder: pytest-xdist >= 3.8), on a
    file of quick tests."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2",
                           "--dist", "loadgroup", "--no-loadscope-reorder", "-v",
                           "tests/test_console.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    workers = set(re.findall(r"^\[(gw\d+)\].* PASSED ", proc.stdout, flags=re.M))
    assert len(workers) == 1, f"tests/test_console.py ran on {sorted(workers)}: groups split"


def test_every_mutation_still_finds_its_snippet():
    """bench/mutations.py breaks each guard by replacing a snippet that must occur once: a snippet
    the code has moved away from would leave its guard unchecked, so each is looked up here, with
    the tests it runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutations", REPO / "bench" / "mutations.py")
    mutations = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mutations  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(mutations)
    finally:
        del sys.modules[spec.name]
    wrong = [why for m in mutations.MUTATIONS for why in mutations.stale(m)]
    assert not wrong, wrong
