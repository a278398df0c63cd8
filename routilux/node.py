"""NodeBase: what every node of a flow is, whichever door created it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .errors import WiringError
from .event import Event
from .slot import Slot

if TYPE_CHECKING:
    from .flow import Flow
    from .job_state import JobState
    from .spec import RoutineSpec

__all__ = ["NODE_ATTRIBUTES", "NodeBase", "RoutineStats"]

#: Names a port may not take because nodes already use them.
NODE_ATTRIBUTES = frozenset({"flow", "get_event", "get_slot", "node_name", "spec", "stats"})


class RoutineStats(msgspec.Struct, frozen=True, kw_only=True):
    """A frozen view of one node's counters (one job, or every finished job of a flow)."""

    activations: int = 0
    emits: int = 0
    errors: int = 0
    retries: int = 0
    busy_time: float = 0.0
    jobs: int = 0


class NodeBase:
    """A node in a flow: a routine spec under a unique name, with bound ports."""

    node_name: str
    flow: Flow

    @property
    def spec(self) -> RoutineSpec:
        """The node type's spec."""
        raise NotImplementedError

    def _slot_map(self) -> dict[str, Slot[Any]]:
        raise NotImplementedError

    def _event_map(self) -> dict[str, Event[Any]]:
        raise NotImplementedError

    def get_slot(self, name: str) -> Slot[Any]:
        """The slot called ``name``.

        Raises:
            WiringError: naming the node's real ports.
        """
        slot = self._slot_map().get(name)
        if slot is None:
            msg = f"Routine `{self.node_name}` has no slot `{name}` ({self.spec.describe_ports()})"
            raise WiringError(msg)
        return slot

    def get_event(self, name: str) -> Event[Any]:
        """The event called ``name``.

        Raises:
            WiringError: naming the node's real ports.
        """
        event = self._event_map().get(name)
        if event is None:
            msg = f"Routine `{self.node_name}` has no event `{name}` ({self.spec.describe_ports()})"
            raise WiringError(msg)
        return event

    def stats(self, state: JobState | None = None) -> RoutineStats:
        """This node's counters in one job (``state``), or summed over the flow's finished jobs."""
        if state is not None:
            rs = state.routine_states.get(self.node_name)
            if rs is None:
                return RoutineStats()
            return RoutineStats(
                activations=rs.activations,
                emits=rs.emits,
                errors=rs.errors,
                retries=rs.retries,
                busy_time=rs.busy_time,
                jobs=1,
            )
        return self.flow.routine_stats(self.node_name)
