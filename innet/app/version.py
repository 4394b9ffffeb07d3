"""innet's version, written once: ``innet.__version__``, ``--version``, each run's
``provenance.json`` and the wheel's metadata (``pyproject.toml``) all read it here."""

__all__ = ["__version__"]

__version__ = "0.1.0"
