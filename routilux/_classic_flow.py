"""routilux 0.10's Flow API (``add_routine``, ``connect``, ``execute`` …) over the one engine.

``Flow`` inherits this mixin; every method here lowers to the typed engine's
``_add_node``/``_connect`` and its job start, so a classic flow and a DSL flow are
the same object running on the same dispatcher.

* ``execute(entry_id, entry_params)`` delivers ``entry_params`` (a dict) to the entry
  routine's ``trigger`` slot and returns the job's live ``JobState`` at once, as 0.10
  did; wait with ``JobState.wait_for_completion(flow, state)`` or ``flow.wait(state)``.
* ``connect(..., param_mapping={"event_key": "slot_key"})`` renames payload keys on
  the way (0.10's direction).
* ``serialize()``/``deserialize()`` describe the flow's structure (routine classes,
  configuration, connections, error policies) as plain data; job state is separate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .errors import SnapshotError, StateError, ValidationError

if TYPE_CHECKING:
    from .connection import Connection
    from .flow import Flow
    from .job_state import JobState
    from .node import NodeBase

__all__ = ["ClassicFlowMixin"]


def _names(names: Any) -> str:
    return ", ".join(names) or "none"


class ClassicFlowMixin:
    """The 0.10 ``Flow`` methods."""

    __slots__ = ()

    # -- building --------------------------------------------------------------------

    @property
    def routines(self) -> dict[str, NodeBase]:
        """The flow's routines (nodes) by id (0.10 name of :attr:`nodes`)."""
        flow = cast("Flow", self)
        return flow.nodes

    def add_routine(self, routine: object, routine_id: str | None = None) -> str:
        """Add ``routine`` under ``routine_id`` (default: the routine's own id) and return the id.

        Raises:
            ValidationError: (a ``ValueError``) the id is taken or invalid.
            TypeError: ``routine`` is not a routine instance.
        """
        flow = cast("Flow", self)
        from .node import NodeBase

        if not isinstance(routine, NodeBase):
            msg = (
                f"Flow {flow.flow_id!r}: add_routine expects a Routine instance, got "
                f"{type(routine).__name__} (did you pass the class instead of an instance?)"
            )
            raise TypeError(msg)
        rid = routine_id if routine_id is not None else getattr(routine, "_id", None)
        flow._add_node(routine, rid)
        return routine.node_name

    def connect(
        self,
        source_routine_id: str,
        source_event: str,
        target_routine_id: str,
        target_slot: str,
        param_mapping: dict[str, str] | None = None,
    ) -> Connection:
        """Connect ``source_routine_id.source_event`` to ``target_routine_id.target_slot``.

        Args:
            param_mapping: ``{"event_key": "slot_key"}`` renames payload keys on the way;
                other keys pass through.

        Raises:
            ValidationError: (a ``ValueError``) naming the missing routine, event or slot.
        """
        flow = cast("Flow", self)
        where = f"Cannot connect `{source_routine_id}.{source_event}` to `{target_routine_id}.{target_slot}`"
        src = flow.nodes.get(source_routine_id)
        if src is None:
            msg = f"{where}: flow {flow.flow_id!r} has no routine `{source_routine_id}` (routines: {_names(flow.nodes)})"
            raise ValidationError(msg)
        event = src._event_map().get(source_event)
        if event is None:
            msg = f"{where}: routine `{source_routine_id}` has no event `{source_event}` (events: {_names(src._event_map())})"
            raise ValidationError(msg)
        dst = flow.nodes.get(target_routine_id)
        if dst is None:
            msg = f"{where}: flow {flow.flow_id!r} has no routine `{target_routine_id}` (routines: {_names(flow.nodes)})"
            raise ValidationError(msg)
        slot = dst._slot_map().get(target_slot)
        if slot is None:
            msg = f"{where}: routine `{target_routine_id}` has no slot `{target_slot}` (slots: {_names(dst._slot_map())})"
            raise ValidationError(msg)
        if param_mapping is not None and not (
            isinstance(param_mapping, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in param_mapping.items())
        ):
            msg = f"{where}: param_mapping must map event keys to slot keys (str -> str), got {param_mapping!r}"
            raise ValidationError(msg)
        conn = flow._connect(event, slot, param_mapping)
        # 0.10's bidirectional bookkeeping, for code that inspects it.
        slots_of: list[Any] | None = vars(event).get("connected_slots")
        if slots_of is not None:
            slots_of.append(slot)
        events_of: list[Any] | None = vars(slot).get("connected_events")
        if events_of is not None:
            events_of.append(event)
        return conn

    def set_error_handler(self, error_handler: Any) -> None:
        """The flow's default error policy (routines without their own use it)."""
        flow = cast("Flow", self)
        if error_handler is not None and not callable(getattr(error_handler, "decide", None)):
            msg = (
                f"Flow {flow.flow_id!r}: an error handler needs decide(exc, attempt); got "
                f"{type(error_handler).__name__} (use ErrorHandler, Stop, Continue, Skip or Retry)"
            )
            raise TypeError(msg)
        flow.error_handler = error_handler

    def get_error_handler(self) -> Any:
        """The flow's default error policy, or ``None`` (``Stop``)."""
        flow = cast("Flow", self)
        return flow.error_handler

    # -- running ---------------------------------------------------------------------

    def execute(
        self,
        entry_routine_id: str,
        entry_params: dict[str, Any] | None = None,
        execution_strategy: str | None = None,
        timeout: float | None = None,
    ) -> JobState:
        """Start a job by delivering ``entry_params`` to the entry routine's ``trigger`` slot.

        Returns the job's live state at once (as 0.10 did); the job runs on. Wait with
        ``JobState.wait_for_completion(flow, state, timeout)`` or ``flow.wait(state)``.

        Args:
            entry_routine_id: The routine to start from; it needs a ``trigger`` slot.
            entry_params: The payload for ``trigger`` (default ``{}``).
            execution_strategy: Switch the flow to this strategy first (no job may be running).
            timeout: Seconds after which the job fails (default: ``execution_timeout``).

        Raises:
            ValidationError: (a ``ValueError``) no such routine, or it has no ``trigger`` slot.
            StateError: a strategy switch was asked while jobs run.
        """
        flow = cast("Flow", self)
        from .job_state import JobState, new_id

        node = flow.nodes.get(entry_routine_id)
        if node is None:
            msg = f"Cannot execute flow {flow.flow_id!r}: entry routine `{entry_routine_id}` not found (routines: {_names(flow.nodes)})"
            raise ValidationError(msg)
        trigger = node._slot_map().get("trigger")
        if trigger is None:
            msg = (
                f"Cannot execute flow {flow.flow_id!r}: entry routine `{entry_routine_id}` has no "
                f"`trigger` slot (slots: {_names(node._slot_map())}); define one with "
                "self.define_slot('trigger', handler=...)"
            )
            raise ValidationError(msg)
        if execution_strategy is not None and execution_strategy != flow.execution_strategy:
            flow.set_execution_strategy(execution_strategy)
        params = dict(entry_params or {})
        inputs = (trigger(params),)
        compiled = flow._compile()
        flow._check_inputs(compiled, inputs)
        state = JobState(
            flow_id=flow.flow_id,
            job_id=new_id(),
            history_limit=flow.history_limit,
            output_limit=flow.output_limit,
        )
        state.record_execution(entry_routine_id, "start", dict(params))
        run = flow._new_run(compiled, state, timeout)
        run.dispatcher.submit(run, list(inputs), resumed=False)
        return state

    def wait_for_completion(
        self, timeout: float | None = None, job_state: JobState | None = None
    ) -> bool:
        """Wait for ``job_state``'s job, or for every job running on this flow (0.10 API).

        Returns:
            ``True`` if they all stopped running within ``timeout`` seconds.
        """
        flow = cast("Flow", self)
        import time

        if job_state is not None:
            run = job_state.live
            return True if run is None else run.done.wait(timeout)
        disp = flow._dispatcher
        if disp is None:
            return True
        runs = disp.call(lambda: list(disp.jobs))
        deadline = None if timeout is None else time.monotonic() + timeout
        for run in runs:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not run.done.wait(left):
                return False
        return True

    # -- queries ---------------------------------------------------------------------

    def _get_routine_id(self, routine: Any) -> str | None:
        """The id under which ``routine`` is in this flow, or ``None``."""
        flow = cast("Flow", self)
        for rid, node in flow.nodes.items():
            if node is routine:
                return rid
        return None

    def find_routines_by_type(self, routine_type: type) -> list[tuple[str, NodeBase]]:
        """``(id, routine)`` for every routine that is an instance of ``routine_type``."""
        flow = cast("Flow", self)
        return [(rid, r) for rid, r in flow.nodes.items() if isinstance(r, routine_type)]

    def get_routine_retry_count(self, routine_id: str) -> int | None:
        """How many retries the routine's own ``ErrorHandler`` has ordered (all jobs), or ``None``."""
        flow = cast("Flow", self)
        node = flow.nodes.get(routine_id)
        if node is None:
            return None
        handler = getattr(node, "_error_handler", None)
        count = getattr(handler, "retry_count", None)
        return count if isinstance(count, int) else None

    # -- structure as data -----------------------------------------------------------

    def serialize(self) -> dict[str, Any]:
        """The flow's structure as JSON-compatible data (no job state).

        Classic routines are stored as class + configuration + error policy; DSL nodes as
        a reference to their ``@routine``.

        Raises:
            SnapshotError: a part has no plain-data form (a ``.map`` transform, a routine
                defined inside a function, an unknown error policy).
        """
        flow = cast("Flow", self)
        from .routine import Routine
        from .serialization_utils import serialize_policy

        routines: dict[str, Any] = {}
        for rid, node in flow.nodes.items():
            if isinstance(node, Routine):
                cls = type(node)
                if "<locals>" in cls.__qualname__:
                    msg = f"Cannot serialize flow {flow.flow_id!r}: routine `{rid}`'s class {cls.__qualname__} is defined inside a function; define it at module level"
                    raise SnapshotError(msg)
                routines[rid] = node.serialize()
            else:
                ref = node.spec.ref
                if not ref or "<locals>" in ref:
                    msg = f"Cannot serialize flow {flow.flow_id!r}: node `{rid}`'s routine {ref or node.spec.name!r} is not importable; define it at module level"
                    raise SnapshotError(msg)
                routines[rid] = {"_type": "Node", "ref": ref}
        connections: list[dict[str, Any]] = []
        for c in flow.connections:
            if c.transform is not None:
                msg = f"Cannot serialize flow {flow.flow_id!r}: connection {c.source.qualname} >> {c.target.qualname} has a .map() transform, which has no plain-data form"
                raise SnapshotError(msg)
            connections.append(
                {
                    "source": c.source.node.node_name,
                    "event": c.source.name,
                    "target": c.target.node.node_name,
                    "slot": c.target.name,
                    "param_mapping": dict(c.param_mapping or {}),
                }
            )
        try:
            handler = serialize_policy(flow.error_handler)
        except TypeError as exc:
            msg = f"Cannot serialize flow {flow.flow_id!r}: {exc}"
            raise SnapshotError(msg) from exc
        return {
            "_type": "Flow",
            "flow_id": flow.flow_id,
            "execution_strategy": flow.execution_strategy,
            "max_workers": flow.max_workers,
            "execution_timeout": flow.execution_timeout,
            "error_handler": handler,
            "routines": routines,
            "connections": connections,
        }

    def deserialize(self, data: dict[str, Any]) -> None:
        """Rebuild the structure :meth:`serialize` described into this (empty) flow.

        Routine classes are imported and built with no arguments (0.10's rule), then
        their configuration and error policy are restored.

        Raises:
            StateError: this flow already has routines.
            SnapshotError: a class or routine cannot be found or built.
        """
        flow = cast("Flow", self)
        from .dsl import RoutineDef
        from .routine import Routine
        from .serialization_utils import deserialize_policy, load_routine_class, resolve_ref

        if flow.nodes:
            msg = f"Cannot deserialize into flow {flow.flow_id!r}: it already has routines ({_names(flow.nodes)})"
            raise StateError(msg)
        flow.flow_id = data.get("flow_id", flow.flow_id)
        strategy = data.get("execution_strategy", flow.execution_strategy)
        flow.set_execution_strategy(strategy, data.get("max_workers"))
        flow.execution_timeout = data.get("execution_timeout")
        flow.error_handler = deserialize_policy(data.get("error_handler"))
        for rid, rdata in data.get("routines", {}).items():
            if rdata.get("_type") == "Node":
                module, _, qualname = rdata["ref"].partition(":")
                try:
                    rdef = resolve_ref(module, qualname)
                except (ImportError, AttributeError) as exc:
                    msg = (
                        f"Cannot deserialize node `{rid}`: routine {rdata['ref']} not found ({exc})"
                    )
                    raise SnapshotError(msg) from exc
                if not isinstance(rdef, RoutineDef):
                    msg = f"Cannot deserialize node `{rid}`: {rdata['ref']} is not a @routine"
                    raise SnapshotError(msg)
                rdef(name=rid, flow=flow)
                continue
            cls = load_routine_class(rdata)
            where = f"{rdata.get('module')}.{rdata.get('class_name')}"
            if cls is None or not issubclass(cls, Routine):
                msg = (
                    f"Cannot deserialize routine `{rid}`: class {where} not found or not a Routine"
                )
                raise SnapshotError(msg)
            try:
                routine = cls()
            except TypeError as exc:
                msg = f"Cannot deserialize routine `{rid}`: {where}() needs arguments ({exc}); routines must be buildable with no arguments (keep settings in set_config)"
                raise SnapshotError(msg) from exc
            routine.deserialize(rdata)
            flow.add_routine(routine, rid)
        for c in data.get("connections", []):
            flow.connect(
                c["source"], c["event"], c["target"], c["slot"], c.get("param_mapping") or None
            )
