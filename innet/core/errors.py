"""Errors in user input, reported as one line naming the file, field and line.

The command line prints ``str(error)`` for any :class:`InnetError` and exits
with status 2, without a traceback. Everything else is a bug and is allowed
to raise normally.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["InnetError", "ConfigError"]


class InnetError(Exception):
    """A problem with what the user asked for, shown to them as one line."""


class ConfigError(InnetError):
    """Invalid content in a configuration file (topology, scenario, override).

    ``str(error)`` reads ``FILE:LINE: FIELD: MESSAGE``, leaving out the parts
    that are unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.line = line
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"
