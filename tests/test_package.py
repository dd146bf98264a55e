"""The package ships only the product (issue 12, item 6): the test tooling lives in `testkit/` beside `src/`,
`modelbake` imports nothing of the reference app or of testkit, and the app image's build context holds none of
it (the image itself is checked in tests/test_docker_paths.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO

pytestmark = pytest.mark.unit

SRC = REPO / "src"
FOREIGN = ("podcast_pipeline", "testkit")


def _imports(path) -> list[str]:
    """Every module an `import` or `from ... import` in the file names, absolute (relative ones resolved)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base]) if base else ".".join(parent)
            found.append(base)
    return found


def test_modelbake_imports_nothing_of_the_app_or_the_testkit():
    """Every import statement of every module, including the ones inside functions."""
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((SRC / "modelbake").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in FOREIGN
    ]
    assert offenders == []


def test_importing_every_modelbake_module_loads_no_app_and_no_testkit(tmp_path):
    """The same, at run time: every module imported in a fresh process (outside the repository, so testkit is
    not even importable), and neither the app nor testkit among what got loaded."""
    code = (
        "import pkgutil, sys, modelbake\n"
        "names = [m.name for m in pkgutil.walk_packages(modelbake.__path__, 'modelbake.')"
        " if not m.name.endswith('__main__')]\n"
        "for name in names: __import__(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FOREIGN!r})\n"
        "assert not loaded, loaded\n"
        "print(len(names))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(SRC)!r})\n{code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 30  # really walked the package


def test_no_test_tooling_under_src():
    """`COPY src/` is the app image's code layer and setuptools packages src/: no test tooling may live there."""
    tooling = {"ghacache", "tinymodels", "demo.py", "testkit"}
    assert not {p.name for p in SRC.rglob("*")} & tooling
    assert (REPO / "testkit/ghacache").is_dir() and (REPO / "testkit/tinymodels").is_dir()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


def test_the_build_context_admits_no_test_tooling():
    """The context is an allow-list: `src/` is the only code in it, testkit/ and tests/ are not admitted."""
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "*"
    admitted = [ln[1:] for ln in rules if ln.startswith("!")]
    assert not [a for a in admitted if a.startswith(("testkit", "tests", "bench"))], admitted
    app = (REPO / "Dockerfile").read_text()
    assert "COPY --link src/ /app/src/" in app and "testkit" not in app


def test_the_wheel_ships_modelbake_typed_and_nothing_else(tmp_path):
    """A wheel built from this tree (pip, no network: setuptools is in the venv) holds the `modelbake` package
    with its PEP 561 marker, the reference app, and no test tooling."""
    import zipfile

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("modelbake-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "modelbake/py.typed" in names
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"modelbake", "podcast_pipeline"}, tops
