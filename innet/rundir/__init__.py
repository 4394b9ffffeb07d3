"""The run directory: its files, its tables, reading and writing them."""
