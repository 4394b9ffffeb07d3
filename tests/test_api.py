"""The Python API (innet.run, innet.load, innet.Results) against the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch
import yaml

import innet
from innet.app.api import _load, _override_strings
from innet.app.cli import main
from innet.app.scenario import apply_overrides
from innet.core.errors import ConfigError, InnetError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def scenario() -> dict:
    """The smoke scenario as a dict, small: one epoch, figures off, absolute topology."""
    raw = yaml.safe_load((ROOT / "scenarios" / "smoke.yaml").read_text())
    raw["topology"] = str(ROOT / "topologies" / "diamond.yaml")
    raw["training"]["epochs"] = 1
    raw["report"] = {"figures": False}
    return raw


def assert_same_results(ours: innet.Results, theirs: innet.Results) -> None:
    pd.testing.assert_frame_equal(ours.metrics, theirs.metrics)
    pd.testing.assert_frame_equal(ours.exchanges, theirs.exchanges)
    pd.testing.assert_frame_equal(ours.node_rates, theirs.node_rates)
    pd.testing.assert_frame_equal(ours.links, theirs.links)
    pd.testing.assert_frame_equal(ours.nodes, theirs.nodes)
    assert ours.summary == theirs.summary


def test_run_of_a_dict_matches_the_cli_and_leaves_nothing_behind(
    scenario, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "cli"
    assert main(["--scenario", str(path), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    cli = innet.load(out)

    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the API's temporary run goes
    # after the CLI's run: what a first run imports may add its libraries' warnings filters
    filters, rc = list(warnings.filters), dict(matplotlib.rcParams)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        results = innet.run(scenario, progress=False)
        assert torch.get_num_threads() == 2
        # denormal floats are no longer flushed to zero (the run flushes them)
        assert float(torch.tensor([1e-39]) * 1.0) > 0
    finally:
        torch.set_num_threads(threads)
    assert warnings.filters == filters
    assert dict(matplotlib.rcParams) == rc
    assert results.run_dir is None
    assert list(cwd.iterdir()) == [] and list(scratch.iterdir()) == []
    assert Path(results.config["topology"]) == ROOT / "topologies" / "diamond.yaml"

    assert_same_results(results, cli)
    assert results.summary == json.loads((out / "summary.json").read_text())
    assert results.variants == ["dense", "dijkstra", "dijkstra_rate"] and results.seeds == [0, 1]
    assert "node_rates" in dir(results) and "in memory" in repr(results)


def test_load_gives_what_run_returned(scenario, tmp_path):
    out = tmp_path / "kept"
    results = innet.run(scenario, {"seeds": 1}, out=out, progress=False)
    assert results.run_dir == out and (out / "summary.json").is_file()
    loaded = innet.load(out)
    assert_same_results(results, loaded)
    assert loaded.config == results.config and loaded.run_dir == out
    assert str(out) in repr(loaded)


def test_a_bad_dict_is_a_config_error_naming_the_dict(scenario, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scenario["training"]["epochs"] = "many"
    with pytest.raises(ConfigError, match=r"<scenario dict>: training\.epochs"):
        innet.run(scenario, progress=False)
    scenario["training"]["epochs"] = 1
    del scenario["name"]
    with pytest.raises(ConfigError, match="<scenario dict>: name"):
        _load(scenario, [], None)
    with pytest.raises(ConfigError, match=r"override training\.lr=fast"):
        _load({**scenario, "name": "x"}, ["training.lr=fast"], None)
    with pytest.raises(InnetError, match="seeds"):
        innet.run(scenario, seeds=0)
    assert list(tmp_path.iterdir()) == []


def test_a_relative_topology_in_a_dict_is_relative_to_the_current_directory(
    scenario, tmp_path, monkeypatch
):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "d.yaml").write_text((ROOT / "topologies" / "diamond.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    loaded = _load({**scenario, "topology": "nets/d.yaml"}, [], None)
    assert loaded.topology_path == tmp_path / "nets" / "d.yaml"


def test_dict_overrides_read_back_as_given(scenario):
    values = {"gate.beta": 1e-05, "gate.kind": "discrete", "seeds": [0, 2], "name": "3"}
    raw = apply_overrides(scenario, _override_strings(values))
    assert raw["gate"]["beta"] == 1e-05 and raw["gate"]["kind"] == "discrete"
    assert raw["seeds"] == [0, 2] and raw["name"] == "3"
    assert _override_strings(["training.epochs=2"]) == ["training.epochs=2"]


def test_import_innet_does_not_import_torch():
    code = "import sys, innet; assert 'torch' not in sys.modules; assert callable(innet.run)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_without_out_writes_no_file_anywhere(scenario, tmp_path, monkeypatch):
    """innet.run(dict) validates the dict and builds its results in memory: no temporary
    YAML file, no temporary run directory; save() writes the run directory afterwards."""
    import builtins
    import os

    cwd, scratch = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    written: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def watched_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if any(flag in mode for flag in "wax+"):
            written.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    def watched_os_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            written.append(str(path))
        return real_os_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(builtins, "open", watched_open)
        patched.setattr(os, "open", watched_os_open)
        results = innet.run({**scenario, "seeds": [0]}, progress=False)
    assert written == []
    assert list(cwd.iterdir()) == [] and list(scratch.iterdir()) == []
    assert results.run_dir is None and "in memory" in repr(results)

    out = tmp_path / "saved"
    assert results.save(out) == out == results.run_dir
    assert_same_results(results, innet.load(out))
    assert results.summary == json.loads((out / "summary.json").read_text())
