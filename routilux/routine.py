"""The classic ``Routine`` class: routilux 0.10's front door, lowered to a RoutineSpec.

This docstring is the classic routine contract.

* ``class R(Routine)`` defines ports in ``__init__``: ``define_slot(name, handler,
  merge_strategy)`` and ``define_event(name, output_params)``. A routine instance is a
  node: ``flow.add_routine(r, "id")`` adds it under that name.
* The instance lowers to the same :class:`~routilux.spec.RoutineSpec` as a ``@routine``
  function (``kind="classic"``), built once from the definitions and rebuilt only when
  they change. Classic slots are untyped (``Any``); payloads are dicts (the keyword
  arguments of ``emit``).
* Merge strategies, per job and folded when a value is delivered:

  - ``"override"`` (default): the handler gets each delivered dict as it is;
  - ``"append"``: every key accumulates into a list; the handler gets the
    accumulation so far (all keys seen in this job) on every delivery;
  - a callable ``merge(old, new) -> merged``: ``old`` starts as ``{}`` in each job.

  Each delivery runs the handler once, with the fold as it stood after that delivery.
* Handlers get data the way 0.10 passed it, decided once in ``define_slot``: a handler
  taking ``**kwargs`` gets the dict unpacked; a single parameter named ``data`` gets the
  dict; a single other parameter gets the matching value if the dict has that key, else
  the dict; several parameters get the matching keys by name (the dict if none match).
* ``self.emit(event, **data)`` returns at once; the job is found from the running
  handler (``flow=`` is accepted, as in 0.10). Every emit is recorded in the job's
  ``execution_history``.
* A handler that raises follows the routine's error policy, else the flow's, else
  ``Stop`` — 0.10 logged and swallowed slot handler errors; we record them in the job
  and apply the policy. ``set_as_optional()`` tolerates failures (``CONTINUE`` or
  ``SKIP``), ``set_as_critical()`` retries and fails the job when retries run out.
* Per-job data (slot accumulations, routine state, stats) lives in the job, so one
  flow can run many jobs at once. Routines must not keep execution state on ``self``
  (0.10's rule); use ``get_execution_context().job_state``.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from .errors import StateError, ValidationError
from .event import Event
from .jobrun import current_task
from .node import NodeBase, RoutineStats
from .slot import Slot
from .spec import EventSpec, Invoke, Policy, RoutineSpec, SlotSpec

if TYPE_CHECKING:
    from .error_handler import ErrorStrategy
    from .flow import Flow
    from .job_state import JobState

__all__ = ["ExecutionContext", "Routine", "RoutineStatus"]

_Call = Callable[[Any], None]


class ExecutionContext(NamedTuple):
    """The running job of a handler: what ``Routine.get_execution_context()`` returns.

    Attributes:
        flow: The flow running the job.
        job_state: The job's live state.
        routine_id: The routine's id (node name) in the flow.
    """

    flow: Flow
    job_state: JobState
    routine_id: str


class RoutineStatus(enum.StrEnum):
    """A routine's status within one job (``job_state.get_routine_state(id)["status"]``)."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    ERROR_CONTINUED = "error_continued"
    SKIPPED = "skipped"


# -- merge strategies (definition time) ------------------------------------------------


def _append_merge(old: Any, new: Any) -> Any:
    # New lists for the keys that change, so a merged dict already handed to a handler
    # (or queued for one) never changes under it.
    if not isinstance(new, dict):
        msg = f"merge_strategy='append' needs dict payloads, got {type(new).__name__}"
        raise TypeError(msg)
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in new.items():
        prev = out.get(key)
        if prev is None and key not in out:
            out[key] = [value]
        elif isinstance(prev, list):
            out[key] = [*prev, value]
        else:
            out[key] = [prev, value]
    return out


def _custom_merge(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def merge(old: Any, new: Any) -> Any:
        # The user's function gets its own copy of the accumulation: a function that
        # updates ``old`` in place must not change values queued for earlier deliveries.
        return fn(dict(old) if isinstance(old, dict) else old, new)

    merge.__name__ = getattr(fn, "__name__", "merge")
    return merge


# -- handler calling shapes (definition time) ------------------------------------------


def _handler_call(handler: object) -> _Call | None:
    """Compile how ``handler`` receives a payload, from its signature, once."""
    if handler is None:
        return None
    if not callable(handler):
        msg = f"A slot handler must be callable, got {type(handler).__name__} {handler!r}"
        raise ValidationError(msg)
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        # No introspectable signature (some builtins): pass the dict, as 0.10's fallback did.
        def call_plain(data: Any) -> None:
            handler(data)

        return call_plain
    if any(p.kind is p.VAR_KEYWORD for p in params):

        def call_kwargs(data: Any) -> None:
            if isinstance(data, dict):
                handler(**data)
            else:
                handler(data)

        return call_kwargs
    names = tuple(p.name for p in params)
    if not names:

        def call_none(data: Any) -> None:
            handler()

        return call_none
    if names == ("data",):

        def call_data(data: Any) -> None:
            handler(data)

        return call_data
    if len(names) == 1:
        (only,) = names

        def call_one(data: Any) -> None:
            if isinstance(data, dict) and only in data:
                handler(data[only])
            else:
                handler(data)

        return call_one

    def call_named(data: Any) -> None:
        if isinstance(data, dict):
            matched = {n: data[n] for n in names if n in data}
            if matched:
                handler(**matched)
                return
        handler(data)

    return call_named


def _strategy_name(strategy: Any) -> str:
    return strategy if isinstance(strategy, str) else getattr(strategy, "__name__", "callable")


class Routine(NodeBase):
    """Base class of classic (routilux 0.10) routines; see the module docstring.

    Subclasses define their slots and events in ``__init__`` (after calling
    ``super().__init__()``) and keep configuration in ``set_config``.
    """

    def __init__(self) -> None:
        self._id: str = hex(id(self))
        self.node_name = self._id
        self._slots: dict[str, Slot[Any]] = {}
        self._events: dict[str, Event[Any]] = {}
        self._calls: dict[str, _Call | None] = {}
        self._config: dict[str, Any] = {}
        self._error_handler: Any = None
        self._spec_cache: RoutineSpec | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}[{self.node_name}]"

    # -- ports -----------------------------------------------------------------------

    def define_slot(
        self,
        name: str,
        handler: Callable[..., Any] | None = None,
        merge_strategy: str | Callable[[Any, Any], Any] = "override",
    ) -> Slot[Any]:
        """Define an input slot; ``handler`` runs on every delivery (see the module docstring).

        Args:
            name: The slot's name, unique among this routine's slots.
            handler: Called with the (merged) data; ``None`` only accumulates.
            merge_strategy: ``"override"``, ``"append"``, or ``merge(old, new) -> merged``.

        Returns:
            The slot (connect it with ``flow.connect``).

        Raises:
            ValidationError: (a ``ValueError``) the name is taken or the strategy unknown.
        """
        self._check_name(name, "slot")
        if name in self._slots:
            msg = f"Routine `{self.node_name}` already has a slot `{name}` ({self.spec.describe_ports()})"
            raise ValidationError(msg)
        if not (merge_strategy in ("override", "append") or callable(merge_strategy)):
            msg = (
                f"Routine `{self.node_name}` slot `{name}`: unknown merge_strategy "
                f"{merge_strategy!r} (valid: 'override', 'append', or a callable (old, new) -> merged)"
            )
            raise ValidationError(msg)
        call = _handler_call(handler)
        slot: Slot[Any] = Slot(self, name, Any)
        # 0.10's public slot attributes (Slot keeps a __dict__ for them).
        vars(slot).update(handler=handler, merge_strategy=merge_strategy, connected_events=[])
        self._slots[name] = slot
        self._calls[name] = call
        self._changed()
        return slot

    def define_event(self, name: str, output_params: list[str] | None = None) -> Event[Any]:
        """Define an output event; ``output_params`` documents the keys it emits.

        Raises:
            ValidationError: (a ``ValueError``) the name is taken.
        """
        self._check_name(name, "event")
        if name in self._events:
            msg = f"Routine `{self.node_name}` already has an event `{name}` ({self.spec.describe_ports()})"
            raise ValidationError(msg)
        event: Event[Any] = Event(self, name, Any)
        vars(event).update(output_params=list(output_params or []), connected_slots=[])
        self._events[name] = event
        self._changed()
        return event

    def _check_name(self, name: str, kind: str) -> None:
        if not isinstance(name, str) or not name or "." in name:
            msg = f"Routine `{self.node_name}`: {kind} name {name!r} is invalid: use a non-empty string without '.'"
            raise ValidationError(msg)

    def get_slot(self, name: str) -> Slot[Any] | None:  # type: ignore[override]
        """The slot called ``name``, or ``None`` (0.10 behaviour)."""
        return self._slots.get(name)

    def get_event(self, name: str) -> Event[Any] | None:  # type: ignore[override]
        """The event called ``name``, or ``None`` (0.10 behaviour)."""
        return self._events.get(name)

    def _slot_map(self) -> dict[str, Slot[Any]]:
        return self._slots

    def _event_map(self) -> dict[str, Event[Any]]:
        return self._events

    # -- the node type ---------------------------------------------------------------

    @property
    def spec(self) -> RoutineSpec:
        """The node type this routine lowers to (rebuilt only after a definition changes)."""
        spec = self._spec_cache
        if spec is None:
            spec = self._spec_cache = self._build_spec()
        return spec

    def _changed(self) -> None:
        self._spec_cache = None
        flow: Flow | None = self.__dict__.get("flow")
        if flow is not None:
            with flow._lock:
                flow._version += 1

    def _build_spec(self) -> RoutineSpec:
        # With one slot, the slot is required so the engine's single-queue fast path
        # applies; with several, each is optional (default None) so a delivery to any
        # one of them fires the routine, and the invoke runs only the delivered ones.
        single = len(self._slots) == 1
        default = SlotSpec.NO_DEFAULT if single else None
        slot_specs: list[SlotSpec] = []
        for name, slot in self._slots.items():
            strategy = vars(slot)["merge_strategy"]
            if strategy == "override":
                slot_specs.append(SlotSpec(name, Any, Policy.QUEUE, default=default))
            else:
                merge = _append_merge if strategy == "append" else _custom_merge(strategy)
                slot_specs.append(
                    SlotSpec(name, Any, Policy.MERGE, default=default, merge=merge, initial={})
                )
        timeout = self._config.get("timeout")
        cls = type(self)
        return RoutineSpec(
            name=cls.__name__,
            slots=tuple(slot_specs),
            events=tuple(EventSpec(n, Any) for n in self._events),
            invoke=self._compile_invoke(),
            kind="classic",
            on_error=self._error_handler,
            timeout=float(timeout) if timeout else None,
            ref=f"{cls.__module__}:{cls.__qualname__}",
            doc=inspect.getdoc(cls) or "",
            target=cls,
        )

    def _compile_invoke(self) -> Invoke:
        calls = tuple(self._calls[name] for name in self._slots)
        if len(calls) == 1:
            (only,) = calls
            if only is None:

                def invoke_nothing(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                    return None

                return invoke_nothing

            def invoke_one(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
                only(args[0])

            return invoke_one

        def invoke_many(args: tuple[Any, ...], emit: Callable[[str, Any], None]) -> None:
            # None marks a slot that got no delivery for this activation.
            for call, data in zip(calls, args, strict=True):
                if call is not None and data is not None:
                    call(data)

        return invoke_many

    def _bind(self, flow: Flow, name: str) -> None:
        current: Flow | None = self.__dict__.get("flow")
        if current is not None and current is not flow:
            msg = (
                f"Routine `{self.node_name}` already belongs to flow {current.flow_id!r}; "
                f"a routine instance is one node of one flow (create another instance for "
                f"flow {flow.flow_id!r})"
            )
            raise ValidationError(msg)
        self.flow = flow
        self.node_name = name

    # -- running ---------------------------------------------------------------------

    def _own_task(self) -> Any:
        cur = current_task()
        if cur is None or cur[1].cn.node is not self:
            return None
        return cur

    def emit(self, event_name: str, flow: Flow | None = None, **kwargs: Any) -> None:
        """Emit ``kwargs`` (a dict payload) on ``event_name``; returns at once.

        Call it from this routine's handler while a job runs: the job is found from
        there. ``flow`` is accepted for 0.10 compatibility and must be that job's flow.

        Raises:
            ValidationError: (a ``ValueError``) the routine has no such event.
            StateError: (a ``RuntimeError``) called outside this routine's handlers.
        """
        if event_name not in self._events:
            events = ", ".join(self._events) or "none"
            msg = f"Routine `{self.node_name}` has no event `{event_name}` (events: {events})"
            raise ValidationError(msg)
        cur = self._own_task()
        if cur is None:
            msg = (
                f"Routine `{self.node_name}` emitted `{event_name}` outside its own handlers: "
                "emit from a slot handler of this routine while a job runs (flow.execute)"
            )
            raise StateError(msg)
        job, nr, emit = cur
        if flow is not None and flow is not job.flow:
            msg = (
                f"Routine `{self.node_name}` emitted `{event_name}` with flow={flow.flow_id!r}, "
                f"but its job runs on flow {job.flow.flow_id!r}"
            )
            raise StateError(msg)
        # 0.10 passed the job state through emit's kwargs and stripped it from the data.
        kwargs.pop("job_state", None)
        job.state.record_execution(nr.name, event_name, dict(kwargs))
        emit(event_name, kwargs)

    def get_execution_context(self) -> ExecutionContext | None:
        """``(flow, job_state, routine_id)`` of the job running this routine, or ``None``."""
        cur = current_task()
        if cur is None:
            return None
        job = cur[0]
        if self.__dict__.get("flow") is not job.flow:
            return None
        return ExecutionContext(job.flow, job.state, self.node_name)

    @property
    def job_state(self) -> JobState | None:
        """The running job's state, or ``None`` outside a job."""
        ctx = self.get_execution_context()
        return ctx.job_state if ctx else None

    @property
    def job_id(self) -> str | None:
        """The running job's id, or ``None`` outside a job."""
        ctx = self.get_execution_context()
        return ctx.job_state.job_id if ctx else None

    def stats(self, state: JobState | None = None) -> RoutineStats:
        """This routine's counters in one job, or summed over its flow's finished jobs."""
        if "flow" not in self.__dict__:
            return RoutineStats()
        return super().stats(state)

    # -- configuration ---------------------------------------------------------------

    def set_config(self, **kwargs: Any) -> None:
        """Store configuration values (read them with :meth:`get_config`).

        ``timeout`` is the per-activation timeout in seconds (as in 0.10).

        Raises:
            StateError: (a ``RuntimeError``) called from this routine's running handler.
            ValidationError: (a ``ValueError``) a value cannot be serialized.
        """
        if self._own_task() is not None:
            msg = (
                f"Routine `{self.node_name}`: cannot change config while it runs; "
                "keep per-job data in job_state.shared_data or update_routine_state"
            )
            raise StateError(msg)
        for key, value in kwargs.items():
            try:
                msgspec.msgpack.encode(value)
            except (TypeError, msgspec.EncodeError) as exc:
                msg = (
                    f"Routine `{self.node_name}`: config value for {key!r} must be "
                    f"serializable, got {type(value).__name__}"
                )
                raise ValidationError(msg) from exc
        if "timeout" in kwargs:
            timeout = kwargs["timeout"]
            if timeout is not None and (
                not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
            ):
                msg = f"Routine `{self.node_name}`: timeout must be a positive number of seconds, got {timeout!r}"
                raise ValidationError(msg)
        self._config.update(kwargs)
        if "timeout" in kwargs:
            self._changed()

    def get_config(self, key: str, default: Any = None) -> Any:
        """Configuration value ``key``, or ``default``."""
        return self._config.get(key, default)

    def config(self) -> dict[str, Any]:
        """A copy of the configuration."""
        return dict(self._config)

    def set_timeout(self, timeout: float) -> None:
        """Abandon an activation after ``timeout`` seconds (a ``TimeoutError`` for the policy)."""
        self.set_config(timeout=timeout)

    # -- error handling --------------------------------------------------------------

    def set_error_handler(self, error_handler: Any) -> None:
        """Use ``error_handler`` (an ``ErrorHandler`` or policy) for this routine's failures.

        It takes priority over the flow's handler.

        Raises:
            TypeError: the object has no ``decide(exc, attempt)`` method.
        """
        if error_handler is not None and not callable(getattr(error_handler, "decide", None)):
            msg = (
                f"Routine `{self.node_name}`: an error handler needs decide(exc, attempt); "
                f"got {type(error_handler).__name__} (use ErrorHandler, Stop, Continue, Skip or Retry)"
            )
            raise TypeError(msg)
        self._error_handler = error_handler
        self._changed()

    def get_error_handler(self) -> Any:
        """This routine's error handler, or ``None`` (the flow's applies)."""
        return self._error_handler

    def set_as_optional(self, strategy: ErrorStrategy | str | None = None) -> None:
        """Tolerate this routine's failures: record them and go on (``CONTINUE`` or ``SKIP``)."""
        from .error_handler import ErrorHandler, ErrorStrategy

        try:
            chosen = ErrorStrategy(strategy) if strategy is not None else ErrorStrategy.CONTINUE
        except ValueError:
            chosen = None
        if chosen not in (ErrorStrategy.CONTINUE, ErrorStrategy.SKIP):
            msg = f"set_as_optional takes CONTINUE or SKIP, got {strategy!r}"
            raise ValidationError(msg)
        self.set_error_handler(ErrorHandler(strategy=chosen, is_critical=False))

    def set_as_critical(
        self, max_retries: int = 3, retry_delay: float = 1.0, retry_backoff: float = 2.0
    ) -> None:
        """Retry this routine's failures; when retries run out the job fails."""
        from .error_handler import ErrorHandler, ErrorStrategy

        self.set_error_handler(
            ErrorHandler(
                strategy=ErrorStrategy.RETRY,
                max_retries=max_retries,
                retry_delay=retry_delay,
                backoff_multiplier=retry_backoff,
                is_critical=True,
            )
        )

    # -- helpers kept from 0.10 --------------------------------------------------------

    def _extract_input_data(self, data: Any = None, **kwargs: Any) -> Any:
        """``data`` if given, else ``kwargs["data"]``, the single value, all kwargs, or ``{}``."""
        if data is not None:
            return data
        if "data" in kwargs:
            return kwargs["data"]
        if len(kwargs) == 1:
            return next(iter(kwargs.values()))
        return dict(kwargs)

    def serialize(self) -> dict[str, Any]:
        """The routine's class, id, configuration, error handler and ports as a dict."""
        from .serialization_utils import (
            get_routine_class_info,
            serialize_callable,
            serialize_policy,
        )

        return {
            "_type": "Routine",
            **get_routine_class_info(self),
            "_id": self._id,
            "_config": dict(self._config),
            "_error_handler": serialize_policy(self._error_handler),
            "_slots": {
                name: {
                    "handler": serialize_callable(vars(s)["handler"]),
                    "merge_strategy": _strategy_name(vars(s)["merge_strategy"])
                    if isinstance(vars(s)["merge_strategy"], str)
                    else serialize_callable(vars(s)["merge_strategy"]),
                }
                for name, s in self._slots.items()
            },
            "_events": {name: list(vars(e)["output_params"]) for name, e in self._events.items()},
        }

    def deserialize(self, data: dict[str, Any], registry: Any = None) -> None:
        """Restore configuration and error handler from :meth:`serialize` output.

        Ports come from the class's ``__init__``; they are not rebuilt from ``data``.
        """
        from .serialization_utils import deserialize_policy

        del registry
        if "_id" in data:
            self._id = data["_id"]
        config = data.get("_config")
        if config:
            self.set_config(**config)
        handler = deserialize_policy(data.get("_error_handler"))
        if handler is not None:
            self.set_error_handler(handler)
