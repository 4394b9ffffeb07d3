"""Run an innet scenario: ``python run_sim.py --scenario dense_vs_dijkstra`` (see --help)."""

import sys

from innet.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
