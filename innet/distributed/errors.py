"""torch.distributed's error messages, shortened to the one line a user needs."""

from __future__ import annotations

import re

__all__ = ["first_line"]

_SOURCE_LOCATION = re.compile(r"^\[[^\]\s]+:\d+\]\s*")  # gloo's "[.../pair.cc:537] "
_BOILERPLATE = ". This is typically caused by"  # gloo's advice, then "GLHF!"


def first_line(error: BaseException) -> str:
    """The gist of a torch.distributed error on one line, without gloo's source location."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    line = _SOURCE_LOCATION.sub("", text.splitlines()[0])
    return line.split(_BOILERPLATE)[0].strip() or type(error).__name__
