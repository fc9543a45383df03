"""Facts about the fields of hfrl's config dataclasses, and the one path that reads a value into a field.

Every config is a dataclass with a docstring under each field. :func:`field_docs` reads those docstrings
(``--help`` texts and TOML comments), :func:`field_types` the resolved type hints, and :func:`read_field`
turns a value into the field's type: text from a flag, ``--set NAME=VALUE`` or a sweep grid, or a value
from a TOML file, JSON or Python. Type checking is jsonargparse's (imported on first use, so that
``--help`` stays fast); the few readings of text that are hfrl's own are written here: ``none`` for an
optional field, ``yes``/``no``/``1``/``0`` for a boolean, class lists such as ``1-9`` or ``0,1``.
A value that does not fit is a :class:`~hfrl.errors.ConfigError`: one line that names the field.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

from hfrl.errors import ConfigError

NONE_WORDS = ("", "none", "null")
"""Text that sets an optional field to ``None``."""
BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
"""Text a boolean field accepts (any case)."""


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings of a config dataclass's fields (the string literal under each field), as one-line text.

    Inherited fields keep the docstring of the nearest class that writes one; reST literals (````x````)
    read as plain text, for ``--help`` and TOML comments.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return {k: v for k, v in docs.items() if k in names}


@functools.cache
def _own_field_docs(klass: type) -> dict[str, str]:
    """The field docstrings written in ``klass``'s own body (cached: many configs share a base)."""
    import ast

    body = _class_body(klass)
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split()).replace("``", "")
    return docs


def _class_body(klass: type) -> list[Any]:
    """The statements of ``klass``'s body.

    A top-level class is found in its file, parsed once per version of the file (``inspect.getsource``
    parses the whole file again for every class); any other class is read from its own source.
    """
    import ast
    import inspect
    import os
    import textwrap

    path = inspect.getsourcefile(klass)
    if path is not None and "." not in klass.__qualname__:
        stat = os.stat(path)
        found = [
            node
            for node in _parsed_file(path, stat.st_mtime_ns, stat.st_size).body
            if isinstance(node, ast.ClassDef) and node.name == klass.__name__
        ]
        if len(found) == 1:
            return found[0].body
    return ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=32)
def _parsed_file(path: str, mtime_ns: int, size: int) -> Any:
    """The syntax tree of a source file (``mtime_ns`` and ``size`` key the cache to its version)."""
    import ast

    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read())


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of a config dataclass's fields."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]


def base_type(hint: Any) -> tuple[Any, bool]:
    """``(hint without None, optional?)``: ``int | None`` gives ``(int, True)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        rest = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 - built at runtime
        return rest, type(None) in typing.get_args(hint)
    return hint, False


def type_name(hint: Any) -> str:
    """What a value of ``hint`` is, in words (``an integer``), for error messages."""
    base, _ = base_type(hint)
    if typing.get_origin(base) is tuple:
        return "a list of integers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(base, str(base))


def read_field(
    cls: type, name: str, value: Any, label: str | None = None, *, text: bool | None = None
) -> Any:
    """``value`` as the type of field ``name`` of config class ``cls``.

    Args:
        cls: The config dataclass.
        name: The field.
        value: Text (a flag, ``--set``, a grid value) or a typed value (TOML, JSON, Python). Integers
            widen to floats; numpy scalars become Python numbers; class lists may be text (``1-9``).
        label: What to call the field in errors (default ``name``; e.g. ``finetune.lr`` in a TOML table).
        text: Whether a string is text to read (a flag's) or a typed value (a TOML file's, where ``'3'`` is
            not an integer). Default: strings are text.

    Raises:
        ConfigError: for an unknown field or a value that is not of the field's type (one line).
    """
    hints = field_types(cls)
    if name not in hints:
        raise ConfigError(
            f"{name!r} is not a setting of {cls.__name__}; settings: {', '.join(sorted(hints))}"
        )
    return read_value(hints[name], value, label or name, text=text)


def read_value(hint: Any, value: Any, label: str, *, text: bool | None = None) -> Any:
    """``value`` as type ``hint`` (see :func:`read_field`); errors name ``label``."""
    base, optional = base_type(hint)
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # numpy scalar from a grid
        value = value.item()
    kinds = (hint, *typing.get_args(hint))
    if Any in kinds and not (isinstance(value, str) and text is not False):  # also takes your own images
        return value
    if isinstance(value, str) and text is False and str not in kinds:
        raise _bad(label, base, value)
    if isinstance(value, str) and text is not False:
        word = value.strip().lower()
        if optional and word in NONE_WORDS:
            return None
        if str in kinds:
            return value
        if base is bool:
            if word not in BOOL_WORDS:
                raise _bad(label, base, value)
            return BOOL_WORDS[word]
        if typing.get_origin(base) is tuple:  # classes as text: 1-9, 0,1
            from hfrl.names import parse_classes

            try:
                return parse_classes(value)
            except ValueError as exc:
                raise ConfigError(f"{label}: {exc}") from None
    typed = _adapt(hint, value, label, parse=isinstance(value, str) and text is not False)
    if isinstance(typed, float) and not math.isfinite(typed):
        raise _bad(label, base, value)
    return typed


def _adapt(hint: Any, value: Any, label: str, parse: bool) -> Any:
    """Read ``value`` as ``hint`` with jsonargparse (``parse``: ``value`` is text to read)."""
    from jsonargparse import ArgumentError

    parser = _parser_for(hint)
    try:
        if parse:
            return parser.parse_args([f"--value={value}"]).value
        return parser.parse_object({"value": value}).value
    except (ArgumentError, TypeError, ValueError):
        raise _bad(label, hint, value) from None


@functools.lru_cache(maxsize=64)
def _parser_for(hint: Any) -> Any:
    """A one-option jsonargparse parser whose option has type ``hint`` (cached per type)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, prog="hfrl", default_env=False)
    parser.add_argument("--value", type=hint)
    return parser


def _bad(label: str, hint: Any, value: Any) -> ConfigError:
    return ConfigError(f"{label} must be {type_name(hint)}, cannot read {value!r}")


__all__ = ["base_type", "field_docs", "field_types", "read_field", "read_value", "type_name"]
