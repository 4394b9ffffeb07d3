"""Every figure of every shipped scenario, drawn from a short run, tells the truth at a glance.

Each shipped scenario (``python run_sim.py --list``) runs through the code
users run (:func:`innet.run`, :func:`innet.sweep` for a scenario with a sweep)
with short settings: one seed, one epoch (two for ``link_failure``, whose
event needs an epoch after it), large batches and small checks; ``smoke`` and
``stragglers`` also write the ``--trace`` timeline figures. Every figure
the run saves is checked at its own size before it would be written
(``Figure.savefig`` is replaced by the check, so no PNG is encoded): no text
leaves the canvas, no legend covers data, a title or an axis label, and no two
legend entries look alike (:mod:`figure_checks`). The report's figures must
all have been checked.

``scale_10k`` and ``scale_100k`` run on ``random_geometric30`` instead of
their 10,000- and 100,000-node networks (minutes of training and netsim;
``scale_1000`` draws the 1,000-node figures); their crowded drawing (from
2,000 nodes) is checked on a generated network by
``test_figures.py::test_crowded_networks_keep_their_text_on_the_canvas``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from figure_checks import figure_problems
from matplotlib.figure import Figure

import innet
from innet.app.scenario import list_scenarios

_INL = {"training.epochs": 1, "training.batch_size": 512, "gate.bracket_samples": 16}
_SCALE = {**_INL, "data.n_samples": 300}
_MOE = {"moe.epochs": 1, "moe.batch_size": 1024, "moe.balance_check.steps": 5,
        "moe.balance_check.tokens": 256}  # fmt: skip
SHORT: dict[str, dict[str, Any]] = {
    "smoke": {**_INL, "report.trace": {}},  # and the timeline figures of --trace
    "dense_vs_dijkstra": _INL,
    "dinl_protocol": _INL,
    "link_failure": {
        **_INL,
        "training.epochs": 2,
        "events": [{"at": {"epoch": 1}, "link_down": "busiest"}],
    },  # fmt: skip
    "stragglers": {**_INL, "report.trace": {}},
    "rate_costs": _INL,
    "beta_sweep": _INL,
    "scale_1000": _SCALE,
    "scale_10k": _SCALE,
    "scale_100k": _SCALE,
    "finite_bank": {
        "gibbs.resamples": 2,
        "gibbs.sample_sizes": [25],
        "gibbs.alphas": [0, 10],
        "router.betas": [0, 0.1],
        "router.steps": 5,
        "gating_bound.population": 100,
        "gating_bound.resamples": 2,
        "gating_bound.sample_sizes": [20],
        "gating_bound.temperatures": [1.0],
    },  # fmt: skip
    "moe_routing": _MOE,
    "moe_routing_geant": _MOE,
}
"""Short settings of every shipped scenario; a new scenario needs its own here."""
SMALLER_NETWORK = {"scale_10k": "random_geometric30", "scale_100k": "random_geometric30"}
SWEEPS = {"beta_sweep": {"gate.beta": [0.0, 0.01]}}  # two of its points
SHIPPED = [name for name, _ in list_scenarios()]


def test_every_shipped_scenario_has_short_settings():
    assert sorted(SHORT) == sorted(SHIPPED)


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """File name -> problems of every figure saved while the test runs (nothing is written)."""
    found: dict[str, list[str]] = {}

    def check(figure: Figure, path: Any, *args: Any, **kwargs: Any) -> None:
        found[_key(Path(path))] = figure_problems(figure)

    monkeypatch.setattr(Figure, "savefig", check)
    return found


def _key(path: Path) -> str:
    """``p01/name.png`` for a sweep point's figure, ``name.png`` otherwise.

    Runs are written under a temporary name (``.p01.partial-<host>-<pid>``) and
    renamed when complete: only the point's name is kept.
    """
    point = re.fullmatch(r"\.?(p\d+)(\.partial-.+)?", path.parent.parent.name)
    return f"{point.group(1)}/{path.name}" if point else path.name


def _run(name: str, out: Path) -> list[Path]:
    """Run the scenario short; the reports written (one per run, and a sweep's own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # geant's import reports the links it merges
        if name in SWEEPS:
            innet.sweep(name, SWEEPS[name], SHORT[name], seeds=1, progress=False, out=out)
        else:
            innet.run(name, SHORT[name], seeds=1, progress=False, out=out,
                      topology=SMALLER_NETWORK.get(name))  # fmt: skip
    return sorted(out.rglob("report.md"))


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in SHIPPED if name in SHORT])
def test_every_figure_keeps_text_on_the_canvas_and_legends_off_the_data(
    name: str, tmp_path: Path, checked: dict[str, list[str]]
) -> None:
    reports = _run(name, tmp_path / name)
    assert checked, f"{name} drew no figure"
    assert {figure: problems for figure, problems in checked.items() if problems} == {}
    shown = {_key(report.parent / link) for report in reports
             for link in re.findall(r"\]\(([^()\s]+\.png)\)", report.read_text())}  # fmt: skip
    assert shown and shown <= set(checked)  # every figure a report shows was checked
    if "report.trace" in SHORT[name]:  # the timelines are not in the report: drawn all the same
        assert [figure for figure in checked if figure.startswith("timeline_")]
