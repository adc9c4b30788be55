"""Distributions whose metadata is the truth: every import in a distribution's package
(deferred ones too; ``if TYPE_CHECKING:`` ones are not needed at run time) names a
distribution its pyproject.toml declares, as a dependency or in an extra. Checked for
the four first-party distributions, the dgm-points fixture, a project `dgm plugin new`
writes, and proved on a fixture that imports what it does not declare."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from dgm.scaffold import new_plugin
from tests.conftest import REPO

PROJECTS = [REPO / "core", *(REPO / "plugins" / name for name in ("image", "audio", "texture"))]
FIXTURES = REPO / "tests" / "plugin_projects"

# Import names whose distribution may not be installed here (or is installed editable,
# which packages_distributions() does not always see), with the distribution they need.
KNOWN_DISTRIBUTIONS = {
    "dgm": "dgm-core", "dgm_image": "dgm-image", "dgm_audio": "dgm-audio",
    "dgm_texture": "dgm-texture", "PIL": "pillow", "sklearn": "scikit-learn",
    "skimage": "scikit-image", "soundfile": "soundfile", "torchaudio": "torchaudio",
    "yaml": "pyyaml", "tomli_w": "tomli-w", "huggingface_hub": "huggingface-hub",
}


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form: ``Pillow`` and ``pillow`` are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """``"dgm-core[testing]>=0.2; python_version>'3'"`` -> ``"dgm-core"`` (PEP 508)."""
    match = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    assert match, f"not a requirement: {requirement!r}"
    return normalize(match.group(1))


def declared(pyproject: dict) -> set[str]:
    """The normalized names of every distribution the project requires, extras included."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {requirement_name(r) for r in requirements}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
            or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import, at any depth, except in the body
    of ``if TYPE_CHECKING:`` (its ``else:`` runs, so it counts)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def distributions_of(name: str, installed: dict[str, list[str]]) -> set[str]:
    """The normalized distributions an import name may come from."""
    found = {normalize(d) for d in installed.get(name, [])}
    if name in KNOWN_DISTRIBUTIONS:
        found.add(normalize(KNOWN_DISTRIBUTIONS[name]))
    return found


def undeclared_imports(project: Path) -> list[str]:
    """``"FILE:LINE: imports NAME from DISTRIBUTION, not declared in pyproject.toml"`` for
    each import in the project's wheel packages that its metadata does not cover
    (standard library, the project's own packages and declared distributions are)."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    wanted = declared(pyproject) | {normalize(pyproject["project"]["name"])}
    packages = [project / p for p in pyproject["tool"]["hatch"]["build"]["targets"]
                ["wheel"]["packages"]]
    own = {p.name for p in packages}
    installed = metadata.packages_distributions()
    problems = []
    for package in packages:
        assert package.is_dir(), f"{package} (named in {project}/pyproject.toml) is missing"
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, name in imported_names(tree):
                if name in sys.stdlib_module_names or name in own:
                    continue
                sources = distributions_of(name, installed)
                if sources & wanted:
                    continue
                where = f"{path.relative_to(project)}:{line}"
                dist = " or ".join(sorted(sources)) or "an unknown distribution (add it to "\
                    "KNOWN_DISTRIBUTIONS)"
                problems.append(f"{where}: imports {name} from {dist}, not declared in "
                                f"{project.name}/pyproject.toml")
    return problems


@pytest.mark.parametrize("project", [*PROJECTS, FIXTURES / "dgm-points"],
                         ids=lambda p: p.name)
def test_each_distribution_declares_what_it_imports(project):
    assert undeclared_imports(project) == []


def test_the_checker_reports_an_undeclared_import_with_file_and_line():
    problems = undeclared_imports(FIXTURES / "undeclared-import")
    assert problems == [
        "src/undeclared_pkg/__init__.py:20: imports numpy from numpy, not declared in "
        "undeclared-import/pyproject.toml",
        "src/undeclared_pkg/images.py:3: imports PIL from pillow, not declared in "
        "undeclared-import/pyproject.toml",
    ]  # torch and dgm (dgm-core) are declared; pandas is imported for type checking only


def test_a_scaffolded_plugin_declares_what_it_imports(tmp_path):
    project = new_plugin("demo", tmp_path)
    assert undeclared_imports(project) == []
    extras = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert "dgm-core[testing]>=0.2" in extras["optional-dependencies"]["test"]


def _requirements(project: Path, extra: str | None = None) -> list[str]:
    table = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    return table["dependencies"] if extra is None else table["optional-dependencies"][extra]


def test_core_floors_match_the_apis_it_uses():
    core = _requirements(REPO / "core")
    # DataLoaderConfiguration(data_seed=) and accelerate.utils.load are accelerate 1.1's
    assert "accelerate>=1.1" in core
    # dgm.testing, the conformance kit, imports pytest: an extra, not a run-time need
    assert _requirements(REPO / "core", "testing") == ["pytest>=8"]
    assert not any(requirement_name(r) == "pytest" for r in core)


def test_versions_agree_and_plugins_need_this_core():
    """One version for the four distributions (pyproject.toml and __version__), and each
    plugin requires at least this release of dgm-core."""
    versions = {}
    for project in PROJECTS:
        table = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        versions[table["name"]] = table["version"]
        package = project / "src" / table["name"].replace("-core", "").replace("-", "_")
        init = ast.parse((package / "__init__.py").read_text())
        stated = [node.value.value for node in init.body if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", None) == "__version__" for t in node.targets)]
        assert stated == [table["version"]], f"{package}/__init__.py __version__"
    assert len(set(versions.values())) == 1, f"the distributions disagree: {versions}"
    release = ".".join(versions["dgm-core"].split(".")[:2])  # "0.2.0" -> "0.2"
    for project in PROJECTS[1:]:
        assert f"dgm-core>={release}" in _requirements(project), project.name


def test_the_dgm_command_does_not_import_the_test_kit_or_pytest():
    script = ("import runpy, sys\nsys.argv = ['dgm', 'plugins']\n"
              "try:\n    runpy.run_module('dgm', run_name='__main__')\n"
              "except SystemExit as stop:\n    assert not stop.code, stop.code\n"
              "print(sorted(m for m in sys.modules if m == 'pytest' or m == 'dgm.testing'))")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().splitlines()[-1] == "[]"
