"""Runtime assignability of type annotations, mirroring what mypy accepts.

``is_assignable(src, dst)`` answers "may a value of type ``src`` flow into a
slot declared ``dst``?" for what users write on routines: builtins (with the
numeric tower), ``None``/``Optional``/unions, ``Literal``, parametrised
builtin containers, Structs, dataclasses and other classes, ``Any`` and
``object``. Constructs it cannot judge (protocols, TypeVars, callables) are
accepted: a runtime check must never reject a flow mypy would accept.
"""

from __future__ import annotations

import collections.abc as cabc
import types
import typing
from typing import Any

__all__ = ["is_assignable", "type_name", "value_fits"]

_NoneType = type(None)

# Containers whose parameters are invariant (mutable), as in typeshed.
_INVARIANT: frozenset[Any] = frozenset(
    {list, dict, set, cabc.MutableSequence, cabc.MutableMapping, cabc.MutableSet}
)
# PEP 484 numeric tower: int is accepted where float is expected, both where complex is.
_PROMOTIONS: dict[Any, tuple[Any, ...]] = {float: (int,), complex: (int, float)}


def _strip(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = tp.__origin__
    if tp is None:
        return _NoneType
    return tp


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def is_assignable(src: Any, dst: Any) -> bool:
    """Return whether a value of type ``src`` may be delivered where ``dst`` is declared."""
    src = _strip(src)
    dst = _strip(dst)
    if dst is Any or dst is object or src is Any or src is dst:
        return True
    if isinstance(src, typing.TypeVar) or isinstance(dst, typing.TypeVar):
        return True
    if typing.get_origin(src) is typing.Literal:
        return all(is_assignable(type(v), dst) for v in typing.get_args(src))
    src_members = _union_args(src)
    if src_members is not None:
        return all(is_assignable(m, dst) for m in src_members)
    dst_members = _union_args(dst)
    if dst_members is not None:
        return any(is_assignable(src, m) for m in dst_members)
    if typing.get_origin(dst) is typing.Literal:
        return False  # a non-literal source may hold any value of its type
    src_origin = typing.get_origin(src) or src
    dst_origin = typing.get_origin(dst) or dst
    if not (isinstance(src_origin, type) and isinstance(dst_origin, type)):
        return True  # callables, protocols, NewType and friends: not judged at runtime
    if getattr(dst_origin, "_is_protocol", False):
        return True
    if not issubclass(src_origin, dst_origin):
        # bool (an int) promotes too: mypy accepts bool where float is expected.
        return any(issubclass(src_origin, p) for p in _PROMOTIONS.get(dst_origin, ()))
    return _args_assignable(src, dst, dst_origin)


def _args_assignable(src: Any, dst: Any, dst_origin: Any) -> bool:
    dst_args = typing.get_args(dst)
    src_args = typing.get_args(src)
    if not dst_args or not src_args:
        return True  # a bare `list` on either side means list[Any]
    if dst_origin is tuple or typing.get_origin(src) is tuple:
        return _tuple_assignable(src_args, dst_args)
    if len(src_args) != len(dst_args):
        return True  # different generic shapes (subclass with other parameters): not judged
    if dst_origin in _INVARIANT:
        return all(
            is_assignable(s, d) and is_assignable(d, s)
            for s, d in zip(src_args, dst_args, strict=True)
        )
    return all(is_assignable(s, d) for s, d in zip(src_args, dst_args, strict=True))


def _tuple_assignable(src_args: tuple[Any, ...], dst_args: tuple[Any, ...]) -> bool:
    if len(dst_args) == 2 and dst_args[1] is Ellipsis:
        items = src_args[:1] if len(src_args) == 2 and src_args[1] is Ellipsis else src_args
        return all(is_assignable(s, dst_args[0]) for s in items)
    if len(src_args) == 2 and src_args[1] is Ellipsis:
        return False  # tuple[int, ...] has no fixed length
    if len(src_args) != len(dst_args):
        return False
    return all(is_assignable(s, d) for s, d in zip(src_args, dst_args, strict=True))


def type_name(tp: Any) -> str:
    """Spell a type the way a user wrote it (``list[int]``, ``str | None``, ``Doc``)."""
    tp = _strip(tp)
    if tp is _NoneType:
        return "None"
    if tp is Any:
        return "Any"
    members = _union_args(tp)
    if members is not None:
        return " | ".join(type_name(m) for m in members)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in typing.get_args(tp))}]"
    if origin is not None:
        args = typing.get_args(tp)
        base = getattr(origin, "__name__", repr(origin))
        if not args:
            return str(base)
        return f"{base}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]"
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else tp.__name__
    return repr(tp)


def value_fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` may be delivered where ``tp`` is declared (shallow: containers by kind).

    Mirrors :func:`is_assignable` for a value: ``Any``/``object`` take anything, unions
    take what fits a member, ``int`` fits ``float``, a ``list[int]`` slot takes a list
    (its items are not walked). What cannot be judged at runtime is accepted.
    """
    tp = _strip(tp)
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return True
    if tp is _NoneType:
        return value is None
    members = _union_args(tp)
    if members is not None:
        return any(value_fits(value, m) for m in members)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    cls = origin or tp
    if not isinstance(cls, type) or getattr(cls, "_is_protocol", False):
        return True
    return isinstance(value, (cls, *_PROMOTIONS.get(cls, ())))
