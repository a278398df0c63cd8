"""RoutineSpec: the one description of a node type that both front doors produce.

The typed DSL (:mod:`routilux.dsl`) and the classic ``Routine`` class
(:mod:`routilux.routine`) each lower a user's definition to a
:class:`RoutineSpec` once, at definition time. The scheduler only ever sees
specs: it never inspects user functions while a job runs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import cached_property
from typing import Any

import msgspec

__all__ = ["EventSpec", "Invoke", "Policy", "RoutineSpec", "SlotSpec"]

#: The compiled call of one activation: ``invoke(args, emit)`` where ``args`` holds one
#: value per slot in slot order and ``emit(event_name, value)`` publishes an output.
Invoke = Callable[[tuple[Any, ...], Callable[[str, Any], None]], None]


class Policy(enum.Enum):
    """How a slot buffers values and when it lets its node fire (docs/semantics.md)."""

    QUEUE = "queue"  # one value per activation, FIFO
    LATEST = "latest"  # newest value wins, sticky
    MERGE = "merge"  # classic merge strategies: fold every delivery, fire on each
    APPEND = "append"  # collect until upstream is quiescent (or a batch is full)
    REDUCE = "reduce"  # fold until upstream is quiescent

    @property
    def collects(self) -> bool:
        """Whether the slot waits for upstream quiescence before it is ready."""
        return self is Policy.APPEND or self is Policy.REDUCE


_NO_DEFAULT: Any = object()


# The specs are frozen msgspec Structs rather than dataclasses: a Struct class is made in
# C in ~50 µs, a dataclass execs generated methods (~1 ms each), which `import routilux`
# paid for every spec and policy class.


class SlotSpec(msgspec.Struct, frozen=True):
    """An input port of a node type.

    Attributes:
        name: The slot name (a parameter name for DSL routines).
        type: The type of one delivered value (``Append[T]`` and friends unwrapped to ``T``).
        policy: The buffering policy.
        default: The default when the slot is optional, else ``SlotSpec.NO_DEFAULT``.
        batch: For ``APPEND``, fire as soon as this many values are buffered.
        merge: For ``MERGE`` and ``REDUCE``, ``merge(accumulated, new) -> accumulated``.
        initial: For ``REDUCE``/``MERGE``, the starting accumulator (``NO_DEFAULT``: first value).
        annotation: The annotation as written, for messages and stub generation.
    """

    name: str
    type: Any = Any
    policy: Policy = Policy.QUEUE
    default: Any = _NO_DEFAULT
    batch: int | None = None
    merge: Callable[[Any, Any], Any] | None = None
    initial: Any = _NO_DEFAULT
    annotation: Any = Any

    NO_DEFAULT = _NO_DEFAULT

    @property
    def required(self) -> bool:
        """Whether the node needs a value on this slot to fire."""
        return self.default is _NO_DEFAULT


class EventSpec(msgspec.Struct, frozen=True):
    """An output port of a node type."""

    name: str
    type: Any = Any


class RoutineSpec(msgspec.Struct, frozen=True, dict=True):
    """Everything the engine needs to know about a node type, derived once.

    Attributes:
        name: The routine's name (default node name).
        slots: Input ports, in call order.
        events: Output ports.
        invoke: The compiled activation call (see :data:`Invoke`).
        kind: ``function``, ``generator``, ``async``, ``async_generator`` or ``classic``.
        concurrency: How many activations of one job may run at once on one node.
        on_error: The routine's error policy, or ``None`` to use the flow's.
        timeout: Per-activation timeout in seconds, or ``None``.
        placement: ``"executor"`` (run on the flow's executor, the default) or ``"local"``
            (always run in the dispatcher's process, even when the executor is remote).
        state: The routine's per-job state class (a ``routilux.State`` Struct), or ``None``.
        ref: ``module:qualname`` of the user's definition, for messages and stubs.
        doc: The user's docstring.
        target: The user's function or class.
        tail_emit: The routine emits only when its activation ends (a function's return
            value): a worker may keep the activation that emit forms, to run it next.
        direct: The user's function when an activation is exactly
            ``emit("result", direct(*args))`` (a stateless function routine whose
            parameters are all slots), so the scheduler can skip ``invoke``'s frame.
    """

    name: str
    slots: tuple[SlotSpec, ...]
    events: tuple[EventSpec, ...]
    invoke: Invoke
    kind: str = "function"
    concurrency: int = 1
    on_error: Any = None
    timeout: float | None = None
    placement: str = "executor"
    state: Any = None
    ref: str = ""
    doc: str = ""
    target: Any = None
    tail_emit: bool = False
    direct: Any = None

    # Derived lookups, not fields (not compared, not in the repr): computed on first use
    # and kept in the instance ``__dict__`` (``dict=True``), so later reads are plain
    # attribute reads.
    @cached_property
    def slot_index(self) -> dict[str, int]:
        """Slot name -> position in :attr:`slots` (and in an activation's ``args``)."""
        return {s.name: i for i, s in enumerate(self.slots)}

    @cached_property
    def event_index(self) -> dict[str, EventSpec]:
        """Event name -> its :class:`EventSpec`."""
        return {e.name: e for e in self.events}

    def describe_ports(self) -> str:
        """``slots: a, b; events: result`` — used in every "no such port" message."""
        slots = ", ".join(s.name for s in self.slots) or "none"
        events = ", ".join(e.name for e in self.events) or "none"
        return f"slots: {slots}; events: {events}"
