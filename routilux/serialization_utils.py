"""Helpers to describe routines, callables and error policies as plain data (0.10 module).

``Flow.serialize()`` stores *what* a flow is made of — routine classes, their
configuration, connections, error policies — as JSON-compatible dicts, and
``Flow.deserialize()`` rebuilds it by importing those classes. Code is referred to
by ``module`` and name, never pickled.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
from collections.abc import Callable
from typing import Any

__all__ = [
    "deserialize_callable",
    "deserialize_policy",
    "get_routine_class_info",
    "load_routine_class",
    "resolve_ref",
    "serialize_callable",
    "serialize_policy",
]


def resolve_ref(module: str, qualname: str) -> Any:
    """Import ``module`` and follow the dotted ``qualname`` inside it.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
    """
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def serialize_callable(obj: Callable[..., Any] | None) -> dict[str, Any] | None:
    """Describe a function, bound method or builtin by name; ``None`` when it has none.

    Lambdas and nested functions have no importable name, so they give ``None``.
    """
    if obj is None:
        return None
    if inspect.ismethod(obj):
        owner = obj.__self__
        return {
            "_type": "method",
            "class_name": type(owner).__name__,
            "method_name": obj.__name__,
            "object_id": getattr(owner, "_id", None),
        }
    if inspect.isbuiltin(obj):
        return {"_type": "builtin", "name": obj.__name__}
    if inspect.isfunction(obj):
        if "<" in obj.__qualname__:
            return None  # a lambda or a function defined inside another: not importable
        return {"_type": "function", "module": obj.__module__, "name": obj.__qualname__}
    return None


def deserialize_callable(
    data: dict[str, Any] | None, context: dict[str, Any] | None = None
) -> Callable[..., Any] | None:
    """Find the callable :func:`serialize_callable` described, or ``None`` if it is gone.

    Args:
        data: The description.
        context: For methods, ``{"routines": {id: routine}}`` to find the owner in.
    """
    if data is None:
        return None
    kind = data.get("_type")
    if kind == "method":
        name = data.get("method_name", "")
        owner_id = data.get("object_id")
        for routine in (context or {}).get("routines", {}).values():
            if getattr(routine, "_id", None) == owner_id:
                found: Callable[..., Any] | None = getattr(routine, name, None)
                return found
        return None
    if kind == "function":
        try:
            fn: Callable[..., Any] = resolve_ref(data["module"], data["name"])
        except (ImportError, AttributeError, KeyError):
            return None
        return fn
    if kind == "builtin":
        builtin: Callable[..., Any] | None = getattr(builtins, data.get("name", ""), None)
        return builtin
    return None


def get_routine_class_info(routine: Any) -> dict[str, Any]:
    """``{"class_name", "module"}`` of a routine instance."""
    cls = type(routine)
    return {"class_name": cls.__qualname__, "module": cls.__module__}


def load_routine_class(class_info: dict[str, Any]) -> type | None:
    """The class :func:`get_routine_class_info` described, or ``None`` if it cannot be found."""
    try:
        cls = resolve_ref(class_info["module"], class_info["class_name"])
    except (ImportError, AttributeError, KeyError):
        return None
    return cls if isinstance(cls, type) else None


def _exc_names(types: tuple[type[BaseException], ...]) -> list[str]:
    return [f"{t.__module__}:{t.__qualname__}" for t in types]


def _exc_types(names: list[str]) -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = []
    for ref in names:
        module, _, qualname = ref.partition(":")
        t = resolve_ref(module, qualname)
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            msg = f"{ref} is not an exception type"
            raise TypeError(msg)
        out.append(t)
    return tuple(out)


def serialize_policy(policy: Any) -> dict[str, Any] | None:
    """Describe an error policy (``ErrorHandler``, ``Stop``, ``Continue``, ``Skip``, ``Retry``).

    Raises:
        TypeError: the policy is of another kind (it has no plain-data form).
    """
    from .error_handler import Continue, ErrorHandler, Retry, Skip, Stop

    if policy is None:
        return None
    if isinstance(policy, ErrorHandler):
        return {
            "_type": "ErrorHandler",
            "strategy": policy.strategy.value,
            "max_retries": policy.max_retries,
            "retry_delay": policy.retry_delay,
            "retry_backoff": policy.backoff_multiplier,
            "retryable_exceptions": _exc_names(policy.retryable_exceptions),
            "is_critical": policy.is_critical,
        }
    if isinstance(policy, Stop | Continue | Skip):
        return {"_type": type(policy).__name__}
    if isinstance(policy, Retry):
        return {
            "_type": "Retry",
            "max_attempts": policy.max_attempts,
            "delay": policy.delay,
            "backoff": policy.backoff,
            "on": _exc_names(policy.on),
            "then": serialize_policy(policy.then),
        }
    msg = (
        f"Cannot serialize error policy {policy!r}: only ErrorHandler, Stop, Continue, "
        "Skip and Retry have a plain-data form"
    )
    raise TypeError(msg)


def deserialize_policy(data: dict[str, Any] | None) -> Any:
    """Rebuild the policy :func:`serialize_policy` described (``None`` for ``None``).

    Raises:
        ValueError: the description names no known policy.
    """
    from .error_handler import Continue, ErrorHandler, Retry, Skip, Stop

    if data is None:
        return None
    kind = data.get("_type")
    if kind == "ErrorHandler":
        return ErrorHandler(
            strategy=data.get("strategy", "stop"),
            max_retries=data.get("max_retries", 3),
            retry_delay=data.get("retry_delay", 1.0),
            backoff_multiplier=data.get("retry_backoff", 2.0),
            retryable_exceptions=_exc_types(data.get("retryable_exceptions", [])) or None,
            is_critical=data.get("is_critical", False),
        )
    simple = {"Stop": Stop, "Continue": Continue, "Skip": Skip}
    if kind in simple:
        return simple[kind]()
    if kind == "Retry":
        then = deserialize_policy(data.get("then"))
        return Retry(
            max_attempts=data.get("max_attempts", 3),
            delay=data.get("delay", 0.0),
            backoff=data.get("backoff", 1.0),
            on=_exc_types(data.get("on", [])) or (Exception,),
            then=then if then is not None else Stop(),
        )
    msg = f"Unknown error policy description {kind!r} (valid: ErrorHandler, Stop, Continue, Skip, Retry)"
    raise ValueError(msg)
