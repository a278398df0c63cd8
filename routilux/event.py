"""Events: a node's typed output ports.

``Event[T]`` is covariant: an ``Event[bool]`` may feed a ``Slot[int]``.
``event >> slot`` (or ``event.to(slot)``) connects; ``event.map(fn)`` is a
typed transform on the edge (routilux's connection with parameter mapping).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import WiringError
from .typecheck import type_name

if TYPE_CHECKING:
    from .connection import Connection
    from .node import NodeBase
    from .slot import Slot

__all__ = ["Event"]

T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")


class Event(Generic[T_co]):
    """An output port of a node (or a mapped view of one, see :meth:`map`).

    Attributes:
        node: The node the event belongs to (``routine`` is the classic alias).
        name: The event's name.
        type: The type of one emitted value (after any ``map``).
    """

    __slots__ = ("__dict__", "_root", "_transform", "name", "node", "type")

    def __init__(self, node: NodeBase, name: str, type: Any = Any) -> None:
        self.node = node
        self.name = name
        self.type = type
        self._root: Event[Any] = self
        self._transform: Callable[[Any], Any] | None = None

    @property
    def routine(self) -> NodeBase:
        """The node this event belongs to (routilux 0.10 name)."""
        return self.node

    @property
    def qualname(self) -> str:
        """``"node.event"``, as used in messages and output keys."""
        return f"{self.node.node_name}.{self.name}"

    def __rshift__(self, slot: Slot[T_co]) -> Connection:
        """Connect this event to ``slot``; see :meth:`to`."""
        return self.to(slot)

    def to(self, slot: Slot[T_co]) -> Connection:
        """Connect this event to ``slot`` in the node's flow.

        Raises:
            WiringError: the types do not match, the target is not a slot, or the two
                nodes are in different flows.
        """
        from .slot import Slot as _Slot

        target: object = slot  # untyped callers can pass anything; say what they passed
        if not isinstance(target, _Slot):
            if isinstance(target, Event):
                msg = (
                    f"Cannot connect `{self.qualname}` to event `{target.qualname}`: "
                    "the right of `>>` must be a slot"
                )
            else:
                msg = (
                    f"Cannot connect `{self.qualname}` to {type(target).__name__} "
                    f"{target!r}: the right of `>>` must be a slot"
                )
            raise WiringError(msg)
        return self.node.flow._connect(self, slot)

    def map(self, fn: Callable[[T_co], U]) -> Event[U]:
        """A view of this event whose values pass through ``fn`` on the way to a slot.

        The mapped event's type is ``fn``'s return annotation when it has one, else ``Any``.
        """
        mapped: Event[U] = Event(self.node, f"{self.name}.map({_fn_name(fn)})", _returns(fn))
        mapped._root = self._root
        inner = self._transform
        mapped._transform = fn if inner is None else _compose(inner, fn)
        return mapped

    def __repr__(self) -> str:
        return f"<Event {self.qualname}: {type_name(self.type)}>"


def _compose(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def both(value: Any) -> Any:
        return second(first(value))

    return both


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _returns(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return Any
    return hints.get("return", Any)


def check_event_name(node: NodeBase, name: str) -> None:
    """Raise the standard "no such event" error (shared by both doors)."""
    msg = f"Routine `{node.node_name}` has no event `{name}` ({node.spec.describe_ports()})"
    raise WiringError(msg)
