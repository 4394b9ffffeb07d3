"""Test helpers: write a topology file and read the one-line error that loading it gives."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from innet.core.errors import ConfigError
from innet.core.topology import load_topology
from innet.core.topology.importer import TopologyImportWarning


def write_file(tmp_path: Path, text: str, name: str = "topo.yaml") -> Path:
    """``text`` written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    """The ConfigError that loading ``path`` raises (import warnings aside); it is one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TopologyImportWarning)
        with pytest.raises(ConfigError) as info:
            load_topology(path)
    assert "\n" not in str(info.value)
    return info.value
