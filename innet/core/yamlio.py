"""YAML documents that remember where each value was written, and errors that point back to it.

A mistake in a configuration file is only useful to report if the report says
where it is. :func:`parse_yaml` loads a document with PyYAML's safe loader and
also returns a :class:`LineMap`: for every mapping key and every sequence item,
the path that reaches it (``("links", 2, "capacity")``) and the 1-based line it
was written on. A path that is not in the map (a field the user left out)
resolves to the line of its nearest written parent.

Two ways of turning a problem into a :class:`~innet.core.errors.ConfigError` that
reads ``FILE:LINE: FIELD: MESSAGE``:

- :class:`FieldError` is raised by checks that look at the validated content
  (a link to an unknown node, say) and carries the path of the culprit;
  :meth:`FieldError.located` attaches file and line.
- :func:`config_error_from_validation` translates a pydantic
  ``ValidationError`` into one line: the first problem in file order, its
  field path written ``links[2].capacity`` and, for an unknown field, the
  names that would have been accepted.

Duplicate keys in one mapping are an error (PyYAML would silently keep the last).

>>> data, lines = parse_yaml("name: x\\nlinks:\\n  - [a, b]\\n  - {between: [a, c]}\\n")
>>> lines.line(("links", 1, "between")), format_path(("links", 1, "between"))
(4, 'links[1].between')
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from innet.core.errors import ConfigError

__all__ = [
    "LineMap",
    "FieldError",
    "parse_yaml",
    "read_yaml",
    "format_path",
    "config_error_from_validation",
]

Loc = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"


class LineMap:
    """Line numbers (1-based) of the keys and items of a YAML document, by path."""

    def __init__(self, lines: Mapping[Loc, int], prefix: Loc = ()) -> None:
        self._lines = dict(lines)
        self._prefix = tuple(prefix)

    def line(self, loc: Sequence[str | int]) -> int | None:
        """Line of ``loc``, or of its nearest ancestor that was written; None if none was."""
        full = self._prefix + tuple(loc)
        for length in range(len(full), -1, -1):
            line = self._lines.get(full[:length])
            if line is not None:
                return line
        return None

    def within(self, *loc: str | int) -> LineMap:
        """The map of a sub-document, e.g. the ``topology:`` block of a scenario file."""
        return LineMap(self._lines, self._prefix + loc)


class FieldError(ValueError):
    """A problem with the value at ``loc`` of a document, before file and line are known."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        self.loc = tuple(loc)
        self.message = message
        super().__init__(f"{format_path(self.loc)}: {message}")

    def located(self, *, file: str | Path | None, lines: LineMap | None) -> ConfigError:
        """The user-facing error, pointing at the file and line of ``loc``."""
        line = lines.line(self.loc) if lines is not None else None
        return ConfigError(
            _one_line(self.message), file=file, field=format_path(self.loc) or None, line=line
        )


def format_path(loc: Sequence[str | int]) -> str:
    """``("links", 2, "capacity")`` -> ``"links[2].capacity"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def parse_yaml(text: str, *, file: str | Path | None = None) -> tuple[Any, LineMap]:
    """Load one YAML document with the safe loader; return its data and its line map.

    Syntax errors and duplicate keys raise :class:`ConfigError` with the line.
    An empty document loads as None.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap({})
        lines: dict[Loc, int] = {(): node.start_mark.line + 1}
        _record_lines(node, (), lines, file, active=set())
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at column {mark.column + 1}" if mark is not None else ""
        context = ""
        if error.context:
            started = error.context_mark
            if started is not None and mark is not None and started.line != mark.line:
                context = f" ({error.context} started at line {started.line + 1})"
            else:
                context = f" ({error.context})"
        raise ConfigError(
            _one_line(f"invalid YAML{where}: {error.problem}{context}"),
            file=file,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(_one_line(f"invalid YAML: {error}"), file=file) from None
    finally:
        loader.dispose()
    return data, LineMap(lines)


def read_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """:func:`parse_yaml` of a file; a missing or unreadable file is a :class:`ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a YAML file", file=path) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"not UTF-8 text ({error.reason})", file=path) from None
    except OSError as error:
        raise ConfigError(f"cannot read file ({error.strerror})", file=path) from None
    return parse_yaml(text, file=path)


def _record_lines(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], file: str | Path | None, active: set[int]
) -> None:
    """Store the line of every key and item below ``node``; reject duplicate keys."""
    if id(node) in active:  # a recursive alias; its lines are already recorded above
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key {key!r} (first written at line {seen[key]})",
                    file=file,
                    field=format_path(loc + (key,)),
                    line=line,
                )
            seen[key] = line
            lines[loc + (key,)] = line
            _record_lines(value_node, loc + (key,), lines, file, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[loc + (index,)] = item.start_mark.line + 1
            _record_lines(item, loc + (index,), lines, file, active)
    active.discard(id(node))


def config_error_from_validation(
    error: ValidationError,
    *,
    model: type[BaseModel],
    file: str | Path | None = None,
    lines: LineMap | None = None,
) -> ConfigError:
    """One-line :class:`ConfigError` for the first problem (in file order) of ``error``.

    ``model`` is the model that was validated; it supplies the accepted field
    names when the problem is an unknown field.
    """
    problems = error.errors(include_url=False)

    def file_order(indexed: tuple[int, ErrorDetails]) -> tuple[bool, int, int]:
        line = lines.line(indexed[1]["loc"]) if lines is not None else None
        return (line is None, line or 0, indexed[0])

    _, first = min(enumerate(problems), key=file_order)
    loc = tuple(first["loc"])
    message = _describe(first, model)
    if len(problems) > 1:
        more = len(problems) - 1
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return FieldError(loc, message).located(file=file, lines=lines)


def _describe(problem: Mapping[str, Any], model: type[BaseModel]) -> str:
    """Plain-words message for one pydantic error."""
    kind, loc = problem["type"], tuple(problem["loc"])
    if kind == "extra_forbidden":
        expected = _field_names(model, loc[:-1])
        known = f" (expected one of: {', '.join(expected)})" if expected else ""
        return f"unknown field {loc[-1]!r}{known}"
    if kind == "missing":
        return f"missing required field {loc[-1]!r}" if loc else "missing value"
    if kind in ("value_error", "assertion_error"):
        return str(problem["ctx"]["error"])
    return f"{problem['msg']}, got {_short_repr(problem.get('input'))}"


def _field_names(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """Field names of the model that sits at ``loc`` inside ``model``, if it is one."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            if typing.get_origin(annotation) not in (list, tuple) or not args:
                return None
            annotation = args[0]
        elif _is_model(annotation) and part in _fields_by_key(annotation):
            annotation = _fields_by_key(annotation)[part].annotation
        else:
            return None
    annotation = _unwrap(annotation)
    return list(_fields_by_key(annotation)) if _is_model(annotation) else None


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """The model's fields under the keys a document uses (the alias where there is one)."""
    return {info.alias or name: info for name, info in model.model_fields.items()}


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
