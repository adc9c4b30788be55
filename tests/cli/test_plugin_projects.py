"""Plugins as a third party writes them: the `dgm plugin new` scaffold, the dgm-points
fixture project (a new modality trained with three core families through its recipes,
no change to core), and `dgm install` / `dgm uninstall`, also with a broken plugin.

Projects are installed as their own distributions with pip into a throw-away folder
(`--target`), never into the development environment; their builds use pip's build
isolation (hatchling from the configured index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, dgm_cli

pytestmark = pytest.mark.slow  # trains, installs or starts processes: not in the fast tier

POINTS = REPO / "tests" / "plugin_projects" / "dgm-points"
QUIET = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def pip_install_target(project: Path, site: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                             "--target", str(site), str(project)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def run_in(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **QUIET, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_scaffold_installs_and_its_tests_and_recipe_pass(tmp_path):
    made = dgm_cli("plugin", "new", "demo", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "dgm-demo"
    assert "dgm install -e" in made.stdout
    assert 'demo = "dgm_demo.plugin"' in (project / "pyproject.toml").read_text()
    site = tmp_path / "site"
    pip_install_target(project, site)

    tests = run_in(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "12 passed" in tests.stdout

    listed = run_in(site, "-m", "dgm", "plugins", "--json")
    demo = {p["name"]: p for p in json.loads(listed.stdout)}["demo"]
    assert demo["loaded"] and demo["error"] is None and demo["distribution"] == "dgm-demo"

    ran = run_in(site, "-m", "dgm", "run", "demo:demo-vae", f"run.dir={tmp_path / 'run'}",
                 cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "trained to step 300" in ran.stdout
    assert len(list((tmp_path / "run" / "samples").glob("sample-*.csv"))) == 16


def test_plugin_new_refuses_a_bad_name_and_an_existing_folder(tmp_path):
    bad = dgm_cli("plugin", "new", "My-Plugin", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "plugin name 'My-Plugin'" in bad.stderr
    assert dgm_cli("plugin", "new", "ok", "--dir", str(tmp_path)).returncode == 0
    again = dgm_cli("plugin", "new", "ok", "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_a_third_party_modality_trains_with_three_families_through_its_recipes(tmp_path):
    site = tmp_path / "site"
    pip_install_target(POINTS, site)
    tests = run_in(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=POINTS)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    listed = run_in(site, "-m", "dgm", "plugins", "--json")
    points = {p["name"]: p for p in json.loads(listed.stdout)}["points"]
    assert points["loaded"] and points["error"] is None  # a hook API 1 plugin loads ...
    assert any("written against dgm hook API 1" in w and "'label'" in w
               for w in points["warnings"])  # ... with a note of what to change
    script = textwrap.dedent(f"""
        import json
        from dgm.workflows import run_recipe
        for family in ("vae", "flow", "diffusion"):
            run = run_recipe(f"points:points-{{family}}",
                             ["train.steps=60", f"run.dir={tmp_path}/{{family}}"],
                             echo=lambda *_: None)
            report = json.loads(run.evaluation_file.read_text())
            print(family, report["family"], report["kind"], report["nll_nats"])
        """)
    ran = run_in(site, "-c", script, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in ran.stdout.strip().splitlines()}
    assert rows["vae"][:2] == ["VAE", "bound"] and rows["flow"][:2] == ["Flow", "exact"]
    assert rows["diffusion"][:2] == ["Diffusion", "bound"]
    for family in ("vae", "flow", "diffusion"):
        samples = list((tmp_path / family / "samples").glob("sample-*.csv"))
        assert len(samples) == 16, family
        assert (tmp_path / family / "samples" / "grid.png").is_file()


def throwaway_env(root: Path) -> Path:
    """A venv without pip whose site-packages also sees the development environment's,
    so `dgm` and pip import there but installs land in the throw-away one."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    dev = sysconfig.get_paths()["purelib"]
    Path(site, "dev_environment.pth").write_text(f"import site; site.addsitedir({dev!r})\n")
    return python


def broken_project(root: Path) -> Path:
    project = root / "dgm-broken"
    (project / "dgm_broken").mkdir(parents=True)
    (project / "dgm_broken" / "__init__.py").write_text("raise RuntimeError('kaboom')\n")
    (project / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["hatchling>=1.21"]
        build-backend = "hatchling.build"

        [project]
        name = "dgm-broken"
        version = "0.2"

        [project.entry-points.dgm]
        broken = "dgm_broken"
        """))
    return project


def test_install_and_uninstall_work_even_with_a_broken_plugin(tmp_path):
    python = throwaway_env(tmp_path / "env")
    env = {**os.environ, **QUIET}

    def dgm(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-m", "dgm", *args], capture_output=True,
                              text=True, env=env, timeout=300)

    installed = dgm("install", str(broken_project(tmp_path)), "--no-deps", "-q")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    found = {p["name"]: p for p in json.loads(dgm("plugins", "--json").stdout)}
    assert found["broken"]["loaded"] is False
    assert "RuntimeError: kaboom" in found["broken"]["error"]
    assert found["image"]["loaded"]

    removed = dgm("uninstall", "dgm-broken")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "Successfully uninstalled dgm-broken" in removed.stdout
    assert "broken" not in {p["name"] for p in json.loads(dgm("plugins", "--json").stdout)}

    missing = dgm("install")
    assert missing.returncode == 2 and "name a package or a path" in missing.stderr
    failed = dgm("install", str(tmp_path / "no-such-project"), "--no-deps")
    assert failed.returncode != 0
