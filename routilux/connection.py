"""Connections: edges from an event to a slot, with an optional transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .event import Event
    from .slot import Slot

__all__ = ["Connection"]


class Connection:
    """An edge ``source >> target``.

    Attributes:
        source: The emitting event (the un-mapped root event).
        target: The receiving slot.
        transform: The composed ``map`` functions applied to each value, if any.
        param_mapping: Classic dict renaming (``{"event_key": "slot_key"}``, 0.10's direction), if any.
    """

    __slots__ = ("param_mapping", "source", "target", "transform")

    def __init__(
        self,
        source: Event[Any],
        target: Slot[Any],
        transform: Callable[[Any], Any] | None = None,
        param_mapping: Mapping[str, str] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.transform = transform
        self.param_mapping = dict(param_mapping) if param_mapping else None

    def __repr__(self) -> str:
        via = " (mapped)" if self.transform is not None else ""
        return f"<Connection {self.source.qualname} >> {self.target.qualname}{via}>"
