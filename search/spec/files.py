"""Reading study files, and turning YAML and pydantic errors into one-line ``SpecError`` messages.

The helpers of ``search.spec`` that deal with files and messages rather than with what a study means.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from unet.errors import ConfigError
from unet.registry import look_up

# Longest quoted bad value in a message; a whole section pasted into one line helps nobody.
_MAX_VALUE_CHARS = 80


class SpecError(ValueError):
    """A study file (or an override of it) is missing, unreadable or invalid; the CLI exits with status 2."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus: ``1e-5`` is a float (YAML 1.1 reads it as a string without a dot) and
    a key repeated in one mapping is an error (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping: keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path) -> Any:
    """The parsed content of a YAML file.

    Raises:
        SpecError: the file cannot be read, is not UTF-8 or is not valid YAML (line and column named).
    """
    where = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"cannot read study file {where}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise SpecError(f"study file {where} is not UTF-8 text: {e.reason} at byte {e.start}") from e
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = e.problem or e.context or "invalid YAML"
        raise SpecError(f"YAML syntax error{at}: {what} ({where})") from e
    except yaml.YAMLError as e:
        raise SpecError(f"YAML error: {' '.join(str(e).split())} ({where})") from e


def study_files(studies_dir: Path) -> dict[str, Path]:
    """The study files in ``studies_dir`` by name (file stem); empty when the folder does not exist."""
    if not studies_dir.is_dir():
        return {}
    files = [p for p in studies_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()]
    return {p.stem: p for p in sorted(files)}


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as a user would type it)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe_validation_error(error: ValidationError, root: type[BaseModel]) -> str:
    """The first problem of a pydantic ``ValidationError`` as one line: the dotted setting, the bad value,
    the fix. Unknown keys and names get the valid ones and a "did you mean" (``unet.registry.look_up``)."""
    err = error.errors()[0]
    loc, kind, value = err["loc"], err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    path, annotation = _walk(root, loc)
    if kind == "extra_forbidden":
        parent_path, parent = _walk(root, loc[:-1])
        fields = parent.model_fields if _is_model(parent) else {}
        what = f"key in {parent_path}" if parent_path else "top-level key"
        return _unknown_name(dict.fromkeys(fields), str(loc[-1]), what)
    if kind == "missing":
        return f"{path} is missing: add it"
    if kind == "literal_error":
        return _unknown_name(dict.fromkeys(typing.get_args(annotation)), value, path)
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", ctx["expected_tags"])
        return _unknown_name(dict.fromkeys(tags), ctx["tag"], f"{path}.type")
    if kind == "union_tag_not_found":
        return f"{path}.type is missing: set type to float, int or categorical"
    if kind == "string_pattern_mismatch":
        return (
            f"{path} must start with a letter or digit and use only letters, digits, '_', '.' and '-' "
            f"but got {_short(value)}"
        )
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"{path} must be {bounds[kind]} {limit} but got {_short(value)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    section, _, name = path.rpartition(".")
    if kind == "value_error" and message.startswith(f"{name}."):
        # A section checked by the object it builds (a pruning rule), whose message names the setting
        # below the section's own name: "plateau.patience must be ..." under "pruning".
        return f"{section}.{message}" if section else message
    message = re.sub(r"a valid dictionary or instance of \w+", "a mapping", message)
    if message.startswith("Input should be "):
        # "Input should be a valid integer, unable to parse string as an integer": the first part says it.
        expected = message.removeprefix("Input should be ").split(",")[0]
        return f"{path} must be {expected} but got {_short(value)}"
    return f"{path}: {message} (got {_short(value)})"


def _unknown_name(valid: dict[Any, None], name: Any, what: str) -> str:
    try:
        look_up(valid, name, what=what)
    except ConfigError as e:
        return str(e)
    return f"{what} {name!r} is not valid here"  # look_up found it: the error was about something else


def _walk(root: type[BaseModel], loc: Sequence[int | str]) -> tuple[str, Any]:
    """The dotted display path of a pydantic error location, and the annotation found there.

    Pydantic puts the tag of a discriminated union (``space.learning_rate.float.low``) and member labels of
    plain unions in the location; they are not part of what the user wrote, so they are left out.
    """
    annotation: Any = root
    path = ""
    for item in loc:
        annotation = _strip(annotation)
        if _is_model(annotation):
            field = annotation.model_fields.get(item) if isinstance(item, str) else None
            path = f"{path}.{item}" if path else str(item)
            annotation = field.annotation if field else None
        elif typing.get_origin(annotation) is dict:
            path = f"{path}.{item}"
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) in (list, tuple):
            path = f"{path}[{item}]"
            annotation = typing.get_args(annotation)[0]
        elif _is_union(annotation):
            tagged = [m for m in typing.get_args(annotation) if _tag(m) == item]
            annotation = tagged[0] if tagged else None
        else:
            path = f"{path}[{item}]" if isinstance(item, int) else f"{path}.{item}"
            annotation = None
    return path, annotation


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X, repeatedly."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif _is_union(annotation):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _tag(member: Any) -> Any:
    """The ``type`` literal of a tagged union member (``FloatParam`` -> "float"), or None."""
    field = member.model_fields.get("type") if _is_model(member) else None
    args = typing.get_args(field.annotation) if field else ()
    return args[0] if args else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
