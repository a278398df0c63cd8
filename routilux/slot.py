"""Slots: a node's typed input ports.

``Slot[T]`` is contravariant: a slot that accepts ``object`` accepts an ``int``.
Calling a slot makes a run input: ``flow.run(fetch_node.url("https://…"))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import WiringError
from .typecheck import type_name, value_fits

if TYPE_CHECKING:
    from .node import NodeBase

__all__ = ["RunInput", "Slot"]

T_contra = TypeVar("T_contra", contravariant=True)


class Slot(Generic[T_contra]):
    """An input port of a node.

    Attributes:
        node: The node the slot belongs to (``routine`` is the classic alias).
        name: The slot's name.
        type: The type of one delivered value.
    """

    __slots__ = ("__dict__", "name", "node", "type")

    def __init__(self, node: NodeBase, name: str, type: Any = Any) -> None:
        self.node = node
        self.name = name
        self.type = type

    @property
    def routine(self) -> NodeBase:
        """The node this slot belongs to (routilux 0.10 name)."""
        return self.node

    @property
    def qualname(self) -> str:
        """``"node.slot"``, as used in messages."""
        return f"{self.node.node_name}.{self.name}"

    def __call__(self, value: T_contra) -> RunInput:
        """Make a run input that delivers ``value`` to this slot when the job starts.

        Raises:
            WiringError: ``value`` does not fit the slot's type (checked shallowly, as
                mypy would check the call statically).
        """
        tp = self.type
        if type(value) is not tp and tp is not Any and not value_fits(value, tp):
            msg = (
                f"Cannot feed {value!r} ({type_name(type(value))}) to `{self.qualname}`: "
                f"it expects {type_name(self.type)}"
            )
            raise WiringError(msg)
        return RunInput(self, value)

    if not TYPE_CHECKING:

        def __rshift__(self, other: object) -> None:
            msg = (
                f"Cannot connect from slot `{self.qualname}`: a connection goes from an "
                f"event to a slot, e.g. `producer.result >> {self.qualname}`"
            )
            raise WiringError(msg)

    def __repr__(self) -> str:
        return f"<Slot {self.qualname}: {type_name(self.type)}>"


class RunInput:
    """A value to deliver to a slot when a job starts (made by calling the slot)."""

    __slots__ = ("slot", "value")

    def __init__(self, slot: Slot[Any], value: Any) -> None:
        self.slot = slot
        self.value = value

    def __repr__(self) -> str:
        return f"<RunInput {self.slot.qualname}={self.value!r}>"
