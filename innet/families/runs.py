"""A run directory with its family: opening a finished run, and what a run saves of its scenario.

The run directory's layer (:mod:`innet.rundir`) and the report's
(:mod:`innet.report`) never look a family up; they are given the family's
tables and report. This module, one layer above them, joins the two:
:func:`open_run` reads which family a run belongs to from its ``config.yaml``
and loads the run with that family's tables; :func:`write_run_report`
rebuilds a run directory's report; :func:`resolved_config` is the scenario as
a run saves it, tidied by its family.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innet.core.errors import InnetError
from innet.families import DEFAULT_FAMILY, FAMILIES, Family
from innet.report.write import write_report
from innet.rundir.io import RunData, load_run, read_config
from innet.rundir.layout import CONFIG_FILE

if TYPE_CHECKING:
    from innet.core.config import LoadedScenario

__all__ = ["open_run", "write_run_report", "resolved_config"]


def open_run(run_dir: str | Path) -> tuple[RunData, Family]:
    """Read a run directory and the family its ``config.yaml`` names (the default one if none).

    A family that is not registered is an :class:`~innet.core.errors.InnetError`
    naming ``config.yaml``.
    """
    run_dir = Path(run_dir)
    name = str(read_config(run_dir).get("family") or DEFAULT_FAMILY)
    try:
        family = FAMILIES.get(name)
    except LookupError as error:
        raise InnetError(f"{run_dir / CONFIG_FILE}: {error.args[0]}") from None
    report = family.report
    return load_run(run_dir, name, report.tables, report.metric_names), family


def write_run_report(run_dir: str | Path) -> dict[str, Any]:
    """Rebuild ``links.csv``, ``summary.json``, ``report.md`` and ``figures/`` of a run directory.

    Returns the summary (:func:`~innet.report.write.write_report`).
    """
    run, family = open_run(run_dir)
    return write_report(run, family.report, Path(run_dir))


def resolved_config(loaded: LoadedScenario, run_dir: Path | None = None) -> dict[str, Any]:
    """The scenario with every default filled in, as saved with the run.

    Fields that the scenario's choices do not use are left out (the family's
    ``tidy_config``); the topology path is relative to ``run_dir`` when given.
    """
    scenario = loaded.scenario
    config = scenario.model_dump(mode="json", by_alias=True)
    topology = loaded.topology_path
    config["topology"] = os.path.relpath(topology, run_dir) if run_dir else str(topology)
    config["seeds"] = scenario.seed_list
    config["comparisons"] = [list(pair) for pair in scenario.comparisons]
    config["variants"] = {
        variant.name: variant.model_dump(mode="json", by_alias=True, exclude={"name"})
        for variant in loaded.variants
    }
    return FAMILIES.get(scenario.family).tidy_config(config)
