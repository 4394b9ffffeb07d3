"""What `pip install .` ships: the code, the shipped scenarios and topologies, a working CLI."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Data packages: mapped by pyproject.toml's [tool.setuptools.package-dir] onto top-level folders.
DATA_PACKAGES = {
    "innet.scenarios": "scenarios",
    "innet.topologies": "topologies",
    "innet.topologies.zoo": "topologies/zoo",
}
# Never copied into the tree the wheel is built from: environments, outputs, caches.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def code_packages() -> set[str]:
    """Every folder of Python code under innet/, as a dotted package name."""
    return {
        ".".join(folder.relative_to(ROOT).parts)
        for folder in [ROOT / "innet", *(ROOT / "innet").rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    }


def shipped_data() -> set[str]:
    """The scenario and topology files a wheel must hold, as paths inside it."""
    files = {f"innet/scenarios/{p.name}" for p in (ROOT / "scenarios").glob("*.yaml")}
    files |= {f"innet/topologies/{p.name}" for p in (ROOT / "topologies").glob("*.yaml")}
    zoo = (ROOT / "topologies" / "zoo").iterdir()
    return files | {f"innet/topologies/zoo/{p.name}" for p in zoo}


def builds_here() -> bool:
    """Whether this environment's setuptools can build innet's wheel (pyproject.toml: >= 68).

    setuptools builds wheels itself from 70.1 on; before that it needs the ``wheel`` package.
    """
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major_minor = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if major_minor >= (70, 1):
        return True
    return major_minor >= (68, 0) and importlib.util.find_spec("wheel") is not None


def test_pyproject_lists_every_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    assert listed - set(DATA_PACKAGES) == code_packages(), "update [tool.setuptools] packages"
    assert {name: setuptools["package-dir"].get(name) for name in DATA_PACKAGES} == {
        "innet.scenarios": "scenarios",
        "innet.topologies": "topologies",
        "innet.topologies.zoo": None,  # follows innet.topologies
    }
    for name, folder in DATA_PACKAGES.items():
        assert (ROOT / folder).is_dir(), name


def test_shipped_topology_files_are_there():
    names = {path.name for path in (ROOT / "topologies" / "zoo").iterdir()}
    assert "README.md" in names and sum(name.endswith(".graphml") for name in names) == 8


@pytest.mark.slow
def test_wheel_installs_and_runs_the_smoke_scenario_anywhere(tmp_path):
    """Build a wheel from a copy of the tree, install it alone, run a shipped scenario elsewhere.

    The wheel is built with this environment's setuptools when it can (nothing downloaded);
    otherwise (a fresh venv's setuptools is older than pyproject.toml asks) pip's build
    isolation fetches setuptools from pip's configured index, as `pip install .` does.
    innet's dependencies are this environment's, put on PYTHONPATH after the installed wheel;
    `python -S` skips .pth files, so an editable install of this checkout is not importable.
    """
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-build-isolation", "--no-index"] if builds_here() else []
    subprocess.run(
        [*pip, "wheel", *offline, "--no-deps", ".", "-w", tmp_path], cwd=source, check=True
    )
    (wheel,) = tmp_path.glob("innet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "innet = innet.app.cli:main" in archive.read(entry_points).decode()
    code = {str(p.relative_to(ROOT).as_posix()) for p in (ROOT / "innet").rglob("*.py")}
    assert code <= names, sorted(code - names)
    assert shipped_data() <= names, sorted(shipped_data() - names)

    site = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-index", "--no-deps", "--target", site, wheel], check=True
    )
    work = tmp_path / "elsewhere"  # no innet/, scenarios/ or topologies/ here
    work.mkdir()
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sorted(dependencies)])}
    env.pop("PYTHONHOME", None)
    script = f"""
import sys
from pathlib import Path
import innet
from innet.app.cli import main
site = Path({str(site)!r})
assert Path(innet.__file__).resolve().is_relative_to(site.resolve()), innet.__file__
others = [p for p in sys.path if (Path(p or ".") / "innet").exists() and Path(p) != site]
assert not others, others
code = main(["--list"])
code |= main(["validate", str(site / "innet" / "topologies" / "abilene.yaml")])
code |= main(["--scenario", "smoke", "--out", "run", "--no-progress"])
sys.exit(code)
"""
    result = subprocess.run(
        [sys.executable, "-S", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke" in result.stdout and "dense_vs_dijkstra" in result.stdout
    assert "abilene" in result.stdout
    run = work / "run"
    for name in ("config.yaml", "summary.json", "exchanges.parquet", "report.md"):
        assert (run / name).is_file(), name
