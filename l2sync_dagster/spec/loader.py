"""Load connection files and report every problem with the file, the line and the field.

A message reads ``connections/x.yaml line 3: direction must be one of left_to_right, ...``.
Lines come from PyYAML's node tree (the file is composed once, then constructed from the
nodes); pydantic's error locations are mapped to the line of the field they name. Secrets are
never resolved here: connection strings are only parsed, which refuses literal passwords.
"""

import difflib
import os
import re
import types
import typing
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from l2sync_dagster.spec.errors import cut, cut_list, shorten
from l2sync_dagster.spec.model import (
    DERIVED_FIELDS,
    RULE_ERROR,
    ConnectionSpec,
    dagster_name_of,
    display_path_of,
)

SUFFIXES = (".yaml", ".yml")

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One problem in a connection file: its message, line (1-based) and dotted field path."""

    message: str
    line: int | None = None
    field: str | None = None

    def format(self, path: Path) -> str:
        """``<display path>[ line N]: <message>``, one short line with secrets masked."""
        where = cut(display_path_of(path), 120)
        where += f" line {self.line}" if self.line is not None else ""
        return shorten(f"{where}: {self.message}")


#: problems of one file shown by ``str(ConnectionFileError)``
SHOWN_PROBLEMS = 10


class ConnectionFileError(ValueError):
    """A connection file (or folder) that cannot be used.

    ``path``, ``line`` and ``field`` describe the first problem; ``problems`` holds all of them
    (one file may have several), and ``str()`` shows one per line.
    """

    def __init__(
        self,
        path: Path | str,
        message: str,
        line: int | None = None,
        field: str | None = None,
        *,
        others: Sequence[Problem] = (),
    ) -> None:
        self.path = Path(path)
        self.message = message
        self.line = line
        self.field = field
        self.problems: tuple[Problem, ...] = (Problem(message, line, field), *others)
        shown = [p.format(self.path) for p in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            shown.append(
                f"{cut(display_path_of(self.path), 120)}: and "
                f"{len(self.problems) - SHOWN_PROBLEMS:,} more problems"
            )
        super().__init__("\n".join(shown))

    @classmethod
    def from_problems(cls, path: Path | str, problems: Sequence[Problem]) -> "ConnectionFileError":
        """One error carrying several problems of the same file (at least one)."""
        first, *rest = problems
        return cls(path, first.message, first.line, first.field, others=rest)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.path, self.problems))


def _rebuild_error(path: Path, problems: Sequence[Problem]) -> ConnectionFileError:
    return ConnectionFileError.from_problems(path, problems)


# --- YAML with line numbers ------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


# libyaml when present: the pure-Python parser takes seconds for a large file
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: bounds of a connection file (a real one has a few kilobytes and is nested 4 levels deep)
MAX_CHARS = 1024 * 1024
MAX_NODES = 50_000
MAX_ALIASES = 100
MAX_EXPANDED = 100_000
MAX_DEPTH = 32


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that keeps mapping keys as written and refuses duplicate keys.

    Keys are field names: ``on:`` stays ``'on'`` (YAML 1.1 would read True) and ``1:`` stays
    ``'1'``. PyYAML silently keeps the last of two equal keys; a connection file must not.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        "found an unhashable key",
                        key_node.start_mark,
                    )
            line = key_node.start_mark.line + 1
            if key in mapping:
                raise _DuplicateKey(cut(key), line, lines[key])
            lines[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


class _TooBig(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message, self.line = message, line


def _check_events(text: str) -> None:
    """Refuse, before building anything, a document nested too deep or with too many nodes.

    The event stream is flat, so this pass cannot itself recurse or blow up.
    """
    loader = _BaseLoader(text)
    depth = nodes = aliases = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _TooBig(f"nested deeper than {MAX_DEPTH} levels", line)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                continue
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise _TooBig(f"more than {MAX_ALIASES} aliases (*name)", line)
            elif not isinstance(event, yaml.ScalarEvent):
                continue
            nodes += 1
            if nodes > MAX_NODES:
                raise _TooBig(f"more than {MAX_NODES:,} entries", line)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse aliases that expand into too many nodes (billion laughs) or into themselves."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise _TooBig("an alias refers to the entry that contains it", node.start_mark.line + 1)
        active.add(id(node))
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                total += size(key_node) + size(value_node)
                if total > MAX_EXPANDED:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_EXPANDED:
                    break
        active.discard(id(node))
        if total > MAX_EXPANDED:
            raise _TooBig(
                f"aliases expand to more than {MAX_EXPANDED:,} entries", node.start_mark.line + 1
            )
        sizes[id(node)] = total
        return total

    size(root)


def _parse_yaml(text: str, path: Path) -> tuple[Any, dict[Loc, int]]:
    """The document and a map from each field path to its 1-based line."""
    if len(text) > MAX_CHARS:
        line = text.count("\n", 0, MAX_CHARS) + 1
        raise ConnectionFileError(
            path, f"the file is larger than {MAX_CHARS // 1024:,} KiB; a connection file is "
            f"a few kilobytes (it has {len(text):,} characters)", line
        )
    loader = None
    try:
        _check_events(text)
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        data = loader.construct_document(node) if node is not None else None
        lines: dict[Loc, int] = {}
        if node is not None:
            _collect_lines(node, (), lines, set())
        return data, lines
    except _TooBig as exc:
        raise ConnectionFileError(path, f"the file is refused: {exc.message}", exc.line) from None
    except _DuplicateKey as exc:
        raise ConnectionFileError(
            path, f"field '{exc.key}' is given twice (first on line {exc.first})", exc.line
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        raise ConnectionFileError(
            path, f"the file holds a control character (U+{code:04X}) that YAML does not allow; "
            "remove it", line
        ) from None
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, path) from None
    except yaml.YAMLError as exc:
        raise ConnectionFileError(path, shorten(f"YAML syntax error: {exc}")) from None
    except RecursionError:
        raise ConnectionFileError(path, f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def _collect_lines(node: yaml.Node, loc: Loc, out: dict[Loc, int], seen: set[int]) -> None:
    if id(node) in seen:  # an alias back to an ancestor
        return
    seen = seen | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            sub = (*loc, key_node.value)
            out.setdefault(sub, key_node.start_mark.line + 1)
            _collect_lines(value_node, sub, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*loc, i)
            out.setdefault(sub, item.start_mark.line + 1)
            _collect_lines(item, sub, out, seen)


def _yaml_error(exc: yaml.MarkedYAMLError, path: Path) -> ConnectionFileError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = cut(exc.problem or exc.context or "invalid YAML")
    message = f"YAML syntax error: {problem}"
    if exc.problem and exc.context:
        ctx_line = exc.context_mark.line + 1 if exc.context_mark is not None else None
        where = f" on line {ctx_line}" if ctx_line is not None and ctx_line != line else ""
        message += f" ({cut(exc.context)}{where})"
    return ConnectionFileError(path, message, line)


# --- translating pydantic errors -------------------------------------------------------------


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _line_of(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of ``loc`` or of its nearest ancestor written in the file (root: unknown)."""
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (None: not a model)."""
    model: Any = ConnectionSpec
    for part in loc:
        if isinstance(part, int):
            continue  # a list item: the list was unwrapped with its field
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``X | None``, ``list[X]`` and ``Annotated[X, ...]`` (first model found)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
        return None
    return annotation


def _allowed_fields(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    names = list(model.model_fields)
    if model is ConnectionSpec:
        names = [n for n in names if n not in DERIVED_FIELDS]
    return names


def _unknown_field(loc: Loc, extra: str = "") -> str:
    name = str(loc[-1])
    allowed = _allowed_fields(loc[:-1])
    message = f"unknown field '{cut(_dotted(loc))}'"
    if extra:
        message += f"; {extra}"
    if allowed:
        message += "; allowed: " + ", ".join(allowed)
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6) if len(name) < 100 else []
    if close:
        message += f"; did you mean '{_dotted((*loc[:-1], close[0]))}'?"
    return message


#: unknown fields of one mapping listed one by one; more are summed up in one problem
SHOWN_UNKNOWN = 3


def _unknown_fields(locs: Sequence[Loc], lines: dict[Loc, int]) -> Problem:
    """One problem for many unknown fields of the same mapping: a few names and how many more."""
    parent = locs[0][:-1]
    names = cut_list((_dotted(loc) for loc in locs), SHOWN_UNKNOWN, quote=True)
    message = f"{len(locs):,} unknown fields: {names}"
    allowed = _allowed_fields(parent)
    if allowed:
        message += "; allowed: " + ", ".join(allowed)
    line = min((ln for ln in (_line_of(loc, lines) for loc in locs) if ln is not None),
               default=None)
    return Problem(message, line, _dotted(parent) or None)


_QUOTE_HINT = " (quote it: YAML reads yes, no, on, off, true and false as true/false)"

_PLAIN: dict[str, str] = {
    "string_type": "must be text",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "model_attributes_type": "must be a mapping (key: value)",
    "string_too_short": "must not be empty",
}

_BOUNDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _translate(error: Any, lines: dict[Loc, int]) -> Problem:
    """One pydantic error as a problem with a readable message, its field and its line."""
    kind: str = error["type"]
    # dict keys add a '[key]' marker to the location; the key itself is what was written
    loc: Loc = tuple(p for p in error["loc"] if p != "[key]")
    ctx: dict[str, Any] = error.get("ctx") or {}
    path = _dotted(loc)
    line = _line_of(loc, lines)

    if kind == RULE_ERROR:
        full = (*loc, *(int(p) if p.isdigit() else p for p in str(ctx["field"]).split(".")))
        return Problem(f"{_dotted(full)} {ctx['detail']}", _line_of(full, lines), _dotted(full))
    if kind == "missing":
        return Problem(f"{path} is required", _line_of(loc[:-1], lines), path)
    if kind == "extra_forbidden":
        return Problem(_unknown_field(loc), line, path)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return Problem(f"{path} must be one of {', '.join(choices)}", line, path)

    value = error.get("input")
    if kind in _PLAIN:
        text = _PLAIN[kind]
        if kind in ("string_type", "string_too_short") and value is None:
            text = "must not be empty"
        elif kind == "string_type" and isinstance(value, bool):
            text += _QUOTE_HINT
        elif kind == "string_type" and not isinstance(value, dict | list):
            text += " (quote it)"
        elif kind in ("model_type", "dict_type") and value is None:
            text = "must not be empty"
        return Problem(f"{path} {text}" if path else f"the file {text}", line, path or None)
    if kind in _BOUNDS:
        bound, text = _BOUNDS[kind]
        return Problem(f"{path} {text} {_number(ctx.get(bound))}", line, path)

    message = str(error.get("msg", kind))
    if kind in ("value_error", "assertion_error"):
        message = re.sub(r"^(Value|Assertion) error, ", "", message)
    else:
        message = message[:1].lower() + message[1:]
    return Problem(f"{path}: {message}" if path else message, line, path or None)


def _problems(errors: Sequence[Any], lines: dict[Loc, int]) -> list[Problem]:
    """Problems for pydantic's errors; many unknown fields of one mapping become one problem."""
    unknown: dict[Loc, list[Loc]] = {}
    others: list[Any] = []
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(p for p in error["loc"] if p != "[key]")
            unknown.setdefault(loc[:-1], []).append(loc)
        else:
            others.append(error)
    out = [_translate(error, lines) for error in others]
    for locs in unknown.values():
        if len(locs) > SHOWN_UNKNOWN:
            out.append(_unknown_fields(locs, lines))
        else:
            out.extend(Problem(_unknown_field(loc), _line_of(loc, lines), _dotted(loc))
                       for loc in locs)
    return out


# --- public API ------------------------------------------------------------------------------


def project_dir_for(path: Path) -> Path:
    """The folder relative paths resolve against for the connection file at ``path``."""
    folder = path.parent
    return folder.parent if folder.name == "connections" else folder


def load_connection(path: Path | str) -> ConnectionSpec:
    """Read and validate one connection file.

    Raises :class:`ConnectionFileError` with every problem found, each with its line.
    """
    path = Path(os.path.abspath(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectionFileError(path, "file not found") from None
    except IsADirectoryError:
        raise ConnectionFileError(path, "is a folder, not a connection file") from None
    except UnicodeDecodeError as exc:
        raise ConnectionFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConnectionFileError(path, f"cannot be read: {exc.strerror or exc}") from None

    data, lines = _parse_yaml(text, path)
    if data is None:
        raise ConnectionFileError(
            path, "the file is empty; a connection needs at least direction, left and right"
        )
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        raise ConnectionFileError(
            path, f"the file must be a mapping of fields (key: value), not {kind}", 1
        )

    problems: list[Problem] = []
    for key in DERIVED_FIELDS:
        if key in data:
            data.pop(key)
            extra = f"the connection {key} comes from the file name" if key == "name" else ""
            problems.append(Problem(_unknown_field((key,), extra), lines.get((key,)), key))
    data.update(name=path.stem, path=path, project_dir=project_dir_for(path),
                lines={_dotted(loc): line for loc, line in lines.items()})

    try:
        spec = ConnectionSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc.errors(), lines))
    if problems:
        # sorted by line, problems without a line (missing top-level fields) last
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConnectionFileError.from_problems(path, problems)
    return spec


def connection_files(folder: Path | str) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files of a folder sorted by name (hidden files left out)."""
    folder = Path(folder)
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def load_connections(
    folder: Path | str,
) -> tuple[list[ConnectionSpec], list[ConnectionFileError]]:
    """Every connection file of a folder: the ones that load, and an error for each that does not.

    A file whose Dagster name is already taken by an earlier file is an error too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return [], [ConnectionFileError(folder, "connections folder not found")]
    specs: list[ConnectionSpec] = []
    errors: list[ConnectionFileError] = []
    taken: dict[str, ConnectionSpec] = {}
    for path in connection_files(folder):
        try:
            spec = load_connection(path)
        except ConnectionFileError as exc:
            errors.append(exc)
            continue
        first = taken.get(spec.dagster_name)
        if first is not None:
            errors.append(
                ConnectionFileError(
                    spec.path,
                    f"the Dagster name {spec.dagster_name!r} is already used by "
                    f"{first.display_path}; rename one of the files",
                )
            )
            continue
        taken[spec.dagster_name] = spec
        specs.append(spec)
    return specs, errors


def find_connection(
    name_or_path: str | Path, connections_dir: Path | str = "connections"
) -> ConnectionSpec:
    """A connection given by the path of its file or by its name in ``connections_dir``.

    A name may also be given as its Dagster name (``customers_demo`` for
    ``customers-demo.yaml``). An unknown name raises :class:`ConnectionFileError` listing the
    available names.
    """
    text = str(name_or_path)
    candidate = Path(text)
    looks_like_path = (
        isinstance(name_or_path, Path)
        or candidate.suffix.lower() in SUFFIXES
        or "/" in text
        or "\\" in text
    )
    if looks_like_path:
        return load_connection(candidate)

    folder = Path(connections_dir)
    if not folder.is_dir():
        raise ConnectionFileError(
            folder, f"connections folder not found (looking for connection '{cut(text)}')"
        )
    files = connection_files(folder)
    for matches in (
        lambda p: p.stem == text,
        lambda p: p.stem.lower() == text.lower(),
        lambda p: dagster_name_of(p.stem) == text,
    ):
        found = [p for p in files if matches(p)]
        if found:
            return load_connection(found[0])

    names = sorted({p.stem for p in files})
    if not names:
        raise ConnectionFileError(
            folder, f"unknown connection '{cut(text)}'; the folder holds no connection files"
        )
    message = f"unknown connection '{cut(text)}'; available: {cut_list(names, 20)}"
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6) if len(text) < 200 else []
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    raise ConnectionFileError(folder, message)
