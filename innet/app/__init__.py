"""Front ends: the command line, the Python API, the runner, sweeps and retiming."""
