"""``python -m innet ...`` is ``python run_sim.py ...`` (and the ``innet`` command)."""

import sys

from innet.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
