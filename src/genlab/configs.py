"""Config dataclasses from JSON: one place that turns unknown keys and values of the wrong type into clear errors.

Every config (model, data, training) is built here, from a config file, a saved run or the command line, so a
string where a switch belongs (`"hflip": "false"`) or a switch where a number belongs (`"seed": true`) is
refused with the field's name instead of being taken for true.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import types
import typing

from genlab.errors import GenlabError


class _Mismatch(Exception):
    pass


def build_config(cls, values: dict, what: str, *, finite: bool = True):
    """A config dataclass from a JSON dict, with a clear error for unknown keys and badly typed values.

    finite: numbers must be finite (a setting); False where inf and NaN are values (a checkpoint's state)."""
    if not isinstance(values, dict):
        raise GenlabError(f"the {what} config must be a JSON object, not {type(values).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GenlabError(f"unknown {what} config key(s) {', '.join(unknown)}; known keys: {', '.join(known)}.")
    hints = typing.get_type_hints(cls)
    typed = {}
    for key, value in values.items():
        try:
            typed[key] = _typed(value, hints[key], finite)
        except _Mismatch:
            raise GenlabError(f"{what} config: {key} must be {_describe(hints[key])}, not {value!r}.") from None
    try:
        return cls(**typed)
    except TypeError as e:
        raise GenlabError(f"bad {what} config: {e}.") from None


def _typed(value, tp, finite: bool = True):
    """`value` as type `tp` (JSON lists become tuples, integers become floats), or _Mismatch."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _typed(value, option, finite)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args and not isinstance(value, bool):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (math.isfinite(value) or not finite):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_typed(v, args[0], finite) for v in value)
            if len(value) == len(args):
                return tuple(_typed(v, a, finite) for v, a in zip(value, args))
    elif origin is dict:
        if isinstance(value, dict):
            return {_typed(k, args[0], finite): _typed(v, args[1], finite) for k, v in value.items()}
    else:
        return value  # a type this module does not check
    raise _Mismatch


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(options) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is dict:
        return f"an object of {_describe(args[1]).removeprefix('an ').removeprefix('a ')}s"
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    return {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}.get(tp, str(tp))


def field_help(cls) -> dict[str, str]:
    """Each field of a config dataclass and the comment that follows it on its line in the source (for the
    command line's help: the text is written once, beside the field)."""
    import ast
    import inspect
    import io
    import tokenize

    found: dict[str, str] = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        source = textwrap.dedent(inspect.getsource(klass))
        comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        for node in ast.parse(source).body[0].body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found[node.target.id] = comments.get(node.lineno, "")
    return found


def choices(tp) -> tuple | None:
    """The values a field's type allows when it lists them (a Literal, or an optional one), else None."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        listed = [choices(a) for a in typing.get_args(tp) if a is not type(None)]
        return listed[0] if len(listed) == 1 else None
    return None


def whole(value, low: int = 0, high: float = math.inf) -> bool:
    """Whether value is an integer (True and False are not) from low to high: the check of every count."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def require(ok: bool, message: str) -> None:
    """A config's check: GenlabError(message) when not ok (every config validates this one way)."""
    if not ok:
        raise GenlabError(message + ".")
