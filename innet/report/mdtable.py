"""Markdown tables whose cells are padded to equal width, so they also read in a terminal."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A Markdown table; ``align`` gives ``left`` or ``right`` per column (default: all left).

    A ``|`` inside a cell is escaped, so labels cannot break the table.

    >>> print(markdown_table(["node", "ms"], [["a|b", "12"]], ["left", "right"]))
    | node | ms |
    | ---- | -: |
    | a\\|b | 12 |
    """
    align = list(align) if align is not None else ["left"] * len(headers)
    cells = [[_escape(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if side == "right" else cell.ljust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width - 1) + ":" if side == "right" else "-" * width
        for width, side in zip(widths, align, strict=True)
    ]
    return "\n".join([line(cells[0]), line(rule), *(line(row) for row in cells[1:])])


def _escape(cell: str) -> str:
    return str(cell).replace("|", "\\|")
