"""innet: a simulator for in-network learning over communication networks.

Neural modules sit on the nodes of a network; sensors encode views of the
input, relays combine latents, the fusion node decodes the class. Training
exchanges latents forward and gradients backward over the links, and innet
accounts every byte and every second of network time that this costs.

From Python: :func:`innet.run` runs a scenario and returns its tables as
pandas DataFrames (:class:`innet.Results`); :func:`innet.sweep` runs it at
every point of a grid of settings; :func:`innet.load` reads a finished run
(or sweep) directory (see :mod:`innet.app.api`). They are imported on first
use, so ``import innet`` stays fast.
"""

from typing import Any

from innet.app.version import __version__

__all__ = ["__version__", "run", "sweep", "load", "Results"]

_API = ("run", "sweep", "load", "Results")


def __getattr__(name: str) -> Any:
    """``run``, ``sweep``, ``load`` and ``Results``, imported lazily from :mod:`innet.app.api`."""
    if name in _API:
        from innet.app import api

        return getattr(api, name)
    raise AttributeError(f"module 'innet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
