"""The documentation stands alone: its links resolve inside the repository, nothing outside it."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and [text](target "title"); images too. Reference-style: [id]: target
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def relative_links(path: Path) -> list[str]:
    """Targets of the Markdown links in ``path`` that point into the repository."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor does inline code
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"^([a-z][a-z0-9+.-]*:|#)", t, re.I)]


def test_the_docs_exist():
    names = {path.name for path in DOCS}
    assert {"README.md", "science.md", "numbers.md", "network-model.md"} <= names


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_point_to_files_in_the_repository(path):
    links = relative_links(path)
    for target in links:
        file = (path.parent / unquote(target.split("#", 1)[0])).resolve()
        assert file.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        assert file.exists(), f"{path.name}: {target} does not exist"


def test_link_pattern_finds_links():
    readme = relative_links(ROOT / "README.md")
    assert "docs/numbers.md" in readme and "docs/science.md" in readme


def test_no_tracked_file_reaches_outside_the_repository():
    """Nothing the project ships may depend on a folder beside the checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    needle = b"../" + b"shared"  # spelled in two parts so that this file does not match
    names = [name.decode() for name in listed if name]
    offenders = [
        name for name in names if (ROOT / name).is_file() and needle in (ROOT / name).read_bytes()
    ]
    assert not offenders, f"mention {needle.decode()!r}: {offenders}"


DOTTED = re.compile(r"\binnet(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
PATH = re.compile(r"(?<![\w/.-])(?:innet|tests|benchmarks|docs|scenarios|topologies)/[\w./-]*[\w/]")


def resolves(dotted: str) -> bool:
    """Whether ``innet.a.b.c`` names a module, or an attribute reachable from one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            thing = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(thing, name):
                return False
            thing = getattr(thing, name)
        return True
    return False


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_code_the_docs_name_exists(path):
    """Every ``innet.module.name`` and every ``innet/...`` path the docs mention is there
    (``NAME`` stands for the name a recipe asks the reader to choose)."""
    text = path.read_text(encoding="utf-8")
    missing = sorted({name for name in DOTTED.findall(text) if not resolves(name)})
    missing += sorted(
        {
            found
            for found in PATH.findall(text)
            if "NAME" not in found and "*" not in found and not (ROOT / found.rstrip(".")).exists()
        }
    )
    assert missing == []


def test_the_name_check_can_fail():
    assert resolves("innet.core.plans.ROUTINGS") and resolves("innet.core.registry")
    assert not resolves("innet.core.plans.NO_SUCH_NAME") and not resolves("innet.gates")
