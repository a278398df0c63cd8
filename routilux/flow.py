"""Flow: a graph of nodes and connections, and the control surface of its jobs.

Build a flow with ``with Flow("name") as flow:`` and ``a.result >> b.x`` (the typed
DSL) or with ``add_routine``/``connect`` (the classic door); run jobs with
``run``/``start``; control them with ``pause``/``resume``/``cancel``/``wait``.
Both doors are the same methods on the same engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ._classic_flow import ClassicFlowMixin
from .checkpoint import CheckpointPolicy, attach, check_resume, flow_fingerprint
from .errors import StateError, ValidationError, WiringError
from .event import Event
from .graph import CompiledFlow
from .job_state import JobState, JobStatus, new_id
from .jobrun import JobRun, inside_job
from .node import NodeBase, RoutineStats
from .scheduler import Dispatcher, Job
from .slot import RunInput, Slot
from .spec import Policy, SlotSpec
from .typecheck import is_assignable, type_name

if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .connection import Connection
    from .stores import JobStore

__all__ = ["Flow"]

_UNSET: Any = object()
_STRATEGIES = ("sequential", "concurrent")


#: What a flow has compiled before its first job: never matches a graph version.
_NOT_COMPILED = CompiledFlow([], [])


class Flow(ClassicFlowMixin):
    """A graph of routines and the engine that runs its jobs.

    Args:
        flow_id: The flow's id (default: a random one).
        execution_strategy: ``"sequential"`` (one task at a time, inline on the
            dispatcher) or ``"concurrent"`` (a pool of ``max_workers`` threads). The
            default follows ``max_workers``: concurrent when it is above 1.
        max_workers: Worker threads for the concurrent strategy (default 5).
        execution_timeout: Default per-job timeout in seconds.
        executor: A ``concurrent.futures.Executor`` to run tasks on (yours to shut down).
        on_error: The default error policy for routines that set none (``Stop()``).
        history_limit: Task records kept per job (older ones are counted, not kept).
        output_limit: Values kept per terminal output key (more are counted, not kept).
        worker_attempts: With an executor that runs tasks in other processes, how many
            times an activation runs when its worker dies under it before the job fails
            (docs/scale-out.md).
    """

    _local = threading.local()

    def __init__(
        self,
        flow_id: str | None = None,
        execution_strategy: str = _UNSET,
        max_workers: int | None = None,
        execution_timeout: float | None = None,
        *,
        executor: Executor | None = None,
        on_error: Any = None,
        history_limit: int = 1000,
        output_limit: int = 10_000,
        worker_attempts: int = 3,
    ) -> None:
        self.flow_id = flow_id if flow_id is not None else new_id()
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            msg = f"Flow {self.flow_id!r}: max_workers must be a positive int, got {max_workers!r}"
            raise ValueError(msg)
        if execution_strategy is _UNSET:
            execution_strategy = (
                "concurrent" if (max_workers or 1) > 1 or executor is not None else "sequential"
            )
        self._max_workers_arg = max_workers
        self.execution_strategy = ""
        self.max_workers = 1
        self.set_execution_strategy(execution_strategy, max_workers)
        self.execution_timeout = execution_timeout
        self.executor = executor
        self.error_handler: Any = on_error
        self.history_limit = history_limit
        self.output_limit = output_limit
        if not isinstance(worker_attempts, int) or worker_attempts < 1:
            msg = f"Flow {self.flow_id!r}: worker_attempts must be a positive int, got {worker_attempts!r}"
            raise ValueError(msg)
        self.worker_attempts = worker_attempts
        self.nodes: dict[str, NodeBase] = {}
        self.connections: list[Connection] = []
        self._version = 0
        self._compiled_at: tuple[int, CompiledFlow] = (-1, _NOT_COMPILED)
        self._dispatcher: Dispatcher | None = None
        self._lock = threading.RLock()
        self._totals: dict[str, list[float]] = {}
        self._checked_inputs: dict[Any, None] = {}

    # -- building --------------------------------------------------------------------

    @classmethod
    def current(cls) -> Flow | None:
        """The innermost flow of a ``with Flow(...)`` block on this thread, if any."""
        stack: list[Flow] = getattr(cls._local, "stack", [])
        return stack[-1] if stack else None

    def __enter__(self) -> Flow:
        stack: list[Flow] | None = getattr(Flow._local, "stack", None)
        if stack is None:
            stack = Flow._local.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        Flow._local.stack.pop()

    def set_execution_strategy(self, strategy: str, max_workers: int | None = None) -> None:
        """Pick ``"sequential"`` or ``"concurrent"`` (with ``max_workers`` threads).

        Raises:
            ValueError: an unknown strategy (the message lists the valid ones).
            StateError: jobs are running on this flow.
        """
        if strategy not in _STRATEGIES:
            msg = f"Unknown execution strategy {strategy!r} (valid: {', '.join(_STRATEGIES)})"
            raise ValueError(msg)
        disp = getattr(self, "_dispatcher", None)
        if disp is not None and disp.jobs:
            msg = f"Flow {self.flow_id!r} has running jobs; change its strategy when they are done"
            raise StateError(msg)
        self.execution_strategy = strategy
        if max_workers is not None:
            self._max_workers_arg = max_workers
        self.max_workers = 1 if strategy == "sequential" else (self._max_workers_arg or 5)
        if disp is not None:
            disp.shutdown(wait=False)
            self._dispatcher = None

    def _add_node(self, node: NodeBase, name: str | None) -> None:
        with self._lock:
            if name is None:
                base = node.spec.name
                name = base
                n = 2
                while name in self.nodes:
                    name = f"{base}_{n}"
                    n += 1
            elif not isinstance(name, str) or not name or "." in name:
                msg = f"Node name {name!r} is invalid: use a non-empty string without '.'"
                raise ValidationError(msg)
            elif name in self.nodes:
                msg = (
                    f"Flow {self.flow_id!r} already has a node named `{name}`; "
                    f"pick another name= (taken: {', '.join(self.nodes)})"
                )
                raise ValidationError(msg)
            node._bind(self, name)  # type: ignore[attr-defined]
            self.nodes[name] = node
            self._version += 1

    def _connect(
        self,
        event: Event[Any],
        slot: Slot[Any],
        param_mapping: dict[str, str] | None = None,
    ) -> Connection:
        from .connection import Connection

        src, dst = event.node, slot.node
        where = f"Cannot connect `{event.qualname}` to `{slot.qualname}`"
        for n in (src, dst):
            if self.nodes.get(n.node_name) is not n:
                other = getattr(n, "flow", None)
                msg = (
                    f"{where}: node `{n.node_name}` belongs to flow "
                    f"{getattr(other, 'flow_id', None)!r}, not {self.flow_id!r}"
                )
                raise WiringError(msg)
        if not is_assignable(event.type, slot.type):
            msg = (
                f"{where}: Event[{type_name(event.type)}] does not fit "
                f"Slot[{type_name(slot.type)}] ({type_name(event.type)} is not assignable "
                f"to {type_name(slot.type)})"
            )
            raise WiringError(msg)
        root = event._root
        conn = Connection(root, slot, event._transform, param_mapping)
        with self._lock:
            for c in self.connections:
                if (
                    c.source is root
                    and c.target is slot
                    and c.transform is None
                    and event._transform is None
                ):
                    msg = f"{where}: they are already connected"
                    raise WiringError(msg)
            self.connections.append(conn)
            self._version += 1
        return conn

    def _compile(self) -> CompiledFlow:
        # One read of an immutable pair: a job start pays no lock when the graph is unchanged.
        version, compiled = self._compiled_at
        if version == self._version:
            return compiled
        with self._lock:
            version, compiled = self._compiled_at
            if version != self._version:
                compiled = CompiledFlow(list(self.nodes.values()), self.connections)
                for cn in compiled.nodes:
                    cn.totals = self._totals.setdefault(cn.name, cn.totals)
                self._checked_inputs = {}
                self._compiled_at = (self._version, compiled)
            return compiled

    def node(self, name: str) -> NodeBase:
        """The node called ``name``.

        Raises:
            WiringError: naming the flow's nodes.
        """
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none"
            msg = f"Flow {self.flow_id!r} has no node `{name}` (nodes: {known})"
            raise WiringError(msg) from None

    # -- validation and pictures -----------------------------------------------------

    def problems(self, *inputs: RunInput) -> list[str]:
        """Every reason the flow cannot work as wired (empty when it can); see :meth:`validate`."""
        out: list[str] = []
        fed: set[tuple[str, str]] = set()
        given: tuple[object, ...] = inputs  # callers without a type checker pass anything
        for inp in given:
            if not isinstance(inp, RunInput):
                out.append(f"run input {inp!r} is not `node.slot(value)`")
                continue
            node = inp.slot.node
            if self.nodes.get(node.node_name) is not node:
                out.append(
                    f"run input `{inp.slot.qualname}` names a node that is not in flow "
                    f"{self.flow_id!r} (nodes: {', '.join(self.nodes) or 'none'})"
                )
                continue
            fed.add((node.node_name, inp.slot.name))
        compiled = self._compile()
        produced = {
            (compiled.nodes[dst].name, compiled.nodes[dst].slot_specs[si].name)
            for (dst, si) in compiled.producers
        }
        reach: set[str] = set()
        if inputs:
            reach = self._downstream({n for n, _ in fed})
        for cn in compiled.nodes:
            ports = [(cn.name, s.name) for s in cn.slot_specs]
            has_any = any(p in produced or p in fed for p in ports)
            if not has_any and (not inputs or cn.name not in reach):
                continue  # an entry node (or one this run does not use)
            for s in cn.slot_specs:
                p = (cn.name, s.name)
                if s.required and p not in produced and p not in fed:
                    out.append(
                        f"slot `{cn.name}.{s.name}` is required but nothing feeds it "
                        f"(connect an event to it, give it a default, or pass "
                        f"`{cn.name}.{s.name}(value)` to run)"
                    )
        out.extend(self._closed_cycles(compiled, fed, reach if inputs else None))
        return out

    def _downstream(self, names: set[str]) -> set[str]:
        compiled = self._compile()
        succ: dict[str, set[str]] = {}
        for (dst, _si), srcs in compiled.producers.items():
            for s in srcs:
                succ.setdefault(compiled.nodes[s].name, set()).add(compiled.nodes[dst].name)
        seen = set(names)
        stack = list(names)
        while stack:
            for nxt in succ.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def _closed_cycles(
        self,
        compiled: CompiledFlow,
        fed: set[tuple[str, str]],
        reach: set[str] | None,
    ) -> list[str]:
        # A cycle can start when one of its nodes can fire first: each of its required
        # slots is fed from outside the cycle or by a run input. With run inputs, cycles
        # the run does not reach are not its concern; without, a cycle that nothing
        # outside feeds is an entry (run inputs start it), like an entry node.
        out: list[str] = []
        for comp in _sccs(compiled):
            if len(comp) == 1:
                (only,) = comp
                if only not in compiled.preds[only]:
                    continue
            names = sorted(compiled.nodes[i].name for i in comp)
            if reach is not None and not reach.intersection(names):
                continue
            fed_from_outside = any(
                any(x not in comp for x in srcs)
                for (dst, _si), srcs in compiled.producers.items()
                if dst in comp
            )
            if reach is None and not fed_from_outside:
                continue
            inside_only: list[str] = []
            can_start = False
            for i in sorted(comp, key=lambda i: compiled.nodes[i].name):
                cn = compiled.nodes[i]
                blocked = [
                    f"{cn.name}.{s.name}"
                    for si, s in enumerate(cn.slot_specs)
                    if s.required
                    and (cn.name, s.name) not in fed
                    and (srcs := compiled.producers.get((i, si), set()))
                    and srcs <= comp
                ]
                if not blocked:
                    can_start = True
                    break
                inside_only.extend(blocked)
            if not can_start:
                out.append(
                    f"cycle {', '.join(names)} has no way in: each of its nodes waits on a "
                    f"required slot fed only from inside the cycle ({', '.join(inside_only)}); "
                    "feed one of them from outside the cycle or pass it as a run input"
                )
        return out

    def validate(self, *inputs: RunInput) -> None:
        """Check the flow without running it.

        Reports required slots that nothing feeds (no connection and, when ``inputs`` are
        given, no run input), inputs for nodes not in this flow, and cycles with no way in.

        Raises:
            ValidationError: listing every problem, one per line.
        """
        found = self.problems(*inputs)
        if found:
            msg = f"Flow {self.flow_id!r} is not valid:\n" + "\n".join(f"- {p}" for p in found)
            raise ValidationError(msg)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` of nodes (with their ports and types) and connections."""
        lines = ["flowchart LR"]
        ids = {name: f"n{i}" for i, name in enumerate(self.nodes)}
        for name, node in self.nodes.items():
            spec = node.spec
            ins = "<br/>".join(f"▸ {_mm(_slot_label(s))}" for s in spec.slots)
            outs = "<br/>".join(f"{e.name}: {_mm(type_name(e.type))} ▸" for e in spec.events)
            body = "<br/>".join(x for x in (f"<b>{_mm(name)}</b>", ins, outs) if x)
            lines.append(f'    {ids[name]}["{body}"]')
        for c in self.connections:
            label = f"{c.source.name} → {c.target.name}"
            if c.transform is not None:
                label += " (map)"
            src, dst = ids[c.source.node.node_name], ids[c.target.node.node_name]
            lines.append(f'    {src} -- "{label}" --> {dst}')
        return "\n".join(lines) + "\n"

    # -- running ---------------------------------------------------------------------

    def _get_dispatcher(self) -> Dispatcher:
        disp = self._dispatcher
        if disp is None:
            with self._lock:
                disp = self._dispatcher
                if disp is None:
                    disp = self._dispatcher = Dispatcher(self, self.max_workers, self.executor)
        return disp

    def _check_inputs(self, compiled: CompiledFlow, inputs: tuple[RunInput, ...]) -> None:
        # Keyed by the Slot objects themselves: the cache is cleared whenever the graph
        # changes (see _compile), so a slot seen before is still a slot of this flow.
        try:
            key: Any = inputs[0].slot if len(inputs) == 1 else frozenset([i.slot for i in inputs])
        except AttributeError:
            key = None
        if key is not None and key in self._checked_inputs:
            return
        found = self.problems(*inputs)
        if found:
            msg = f"Cannot run flow {self.flow_id!r}:\n" + "\n".join(f"- {p}" for p in found)
            raise ValidationError(msg)
        if key is not None:
            self._checked_inputs[key] = None

    def start(
        self,
        *inputs: RunInput,
        job_id: str | None = None,
        timeout: float | None = None,
        store: JobStore | None = None,
        checkpoint: CheckpointPolicy | None = None,
    ) -> Job:
        """Start a job fed with ``inputs`` (each ``node.slot(value)``) and return at once.

        Args:
            inputs: Values to deliver when the job starts, in order.
            job_id: The job's id (default: a random one).
            timeout: Seconds after which the job fails (default: ``execution_timeout``).
            store: Where the job's checkpoints go (see ``docs/durability.md``).
            checkpoint: ``"manual"``, ``"on_pause"`` (the default with a store) or
                ``"every_task"`` (a journal record per finished task: survives ``kill -9``).

        Raises:
            ValidationError: the inputs name nodes outside this flow, or leave a
                required slot of a node they reach with nothing to feed it.
            ValueError: an unknown checkpoint policy, or one that writes with no store.
        """
        run = self._prepare(inputs, job_id, timeout, store, checkpoint)
        run.dispatcher.submit(run, list(inputs), resumed=False)
        return Job(self, run)

    def _prepare(
        self,
        inputs: tuple[RunInput, ...],
        job_id: str | None,
        timeout: float | None,
        store: JobStore | None,
        checkpoint: CheckpointPolicy | None,
    ) -> JobRun:
        """Check the inputs and make the job's state and run (shared by start and run)."""
        compiled = self._compile()
        self._check_inputs(compiled, inputs)
        state = JobState(
            flow_id=self.flow_id,
            job_id=job_id if job_id is not None else new_id(),
            history_limit=self.history_limit,
            output_limit=self.output_limit,
            fingerprint=flow_fingerprint(compiled),
        )
        run = self._new_run(compiled, state, timeout)
        if store is not None or checkpoint is not None:
            attach(run, store, checkpoint)
        return run

    def _new_run(self, compiled: CompiledFlow, state: JobState, timeout: float | None) -> JobRun:
        disp = self._get_dispatcher()
        if disp.remote is not None:
            disp.remote.check(compiled)  # before anything is submitted
        run = JobRun(disp, compiled, state, self.error_handler)
        if timeout is None:
            timeout = self.execution_timeout
        if timeout is not None:  # else the class default: no instance __dict__ per job
            run.timeout = timeout
            run.deadline_at = time.perf_counter() + timeout
        return run

    def run(
        self,
        *inputs: RunInput,
        timeout: float | None = None,
        job_id: str | None = None,
        store: JobStore | None = None,
        checkpoint: CheckpointPolicy | None = None,
    ) -> JobState:
        """Run a job to the end and return its state (``completed``, ``failed`` …).

        A job that runs past ``timeout`` seconds is failed with a ``JobTimeoutError``
        recorded in its state; ``run`` returns that state. ``store`` and ``checkpoint``
        are as for :meth:`start`.
        """
        run = self._prepare(inputs, job_id, timeout, store, checkpoint)
        state = run.state
        disp = run.dispatcher
        if run.timeout is not None and disp.inline:
            # The caller must stay free to give up on a job stuck in user code at its
            # deadline, so it cannot be the dispatcher itself (no caller-runs here).
            disp.submit(run, list(inputs), resumed=False)
            final = disp.await_deadline(run)
            assert final is not None  # no limit: returns at the deadline at the latest
            return final
        disp.run_here(run, inputs, resumed=False)
        if not run.finished:  # else this thread ran it to its end
            run.done.wait()
        return state

    def wait(self, state: JobState, timeout: float | None = None) -> JobState:
        """Block until the job of ``state`` stops running; return its state.

        Raises:
            JobTimeoutError: still running after ``timeout`` seconds (the job goes on).
        """
        run = state.live
        if run is None:
            return state
        return Job(self, run).wait(timeout)

    def pause(self, state: JobState, reason: str = "", timeout: float | None = None) -> JobState:
        """Stop dispatching the job's work and return once its running tasks have finished.

        Queued activations are kept as ``state.pending`` and unconsumed values as
        ``state.buffers``; :meth:`resume` continues from there.

        Raises:
            StateError: the job is not running.
        """
        run = state.live
        if run is None:
            if state.status is JobStatus.PAUSED:
                return state
            msg = f"Cannot pause job {state.job_id}: it is {state.status}, not running"
            raise StateError(msg)
        if reason:
            state.shared_log.append({"event": "pause", "reason": reason})
        run.dispatcher.call(lambda: run.dispatcher.request_pause(run))
        if _inside(run):
            return state  # called from the job's own task: waiting here would deadlock
        return Job(self, run).wait(timeout)

    def cancel(self, state: JobState, reason: str = "", timeout: float | None = None) -> JobState:
        """Drop the job's pending work; its status becomes ``cancelled`` once running tasks end.

        Raises:
            StateError: the job has already finished.
        """
        run = state.live
        if reason:
            state.shared_log.append({"event": "cancel", "reason": reason})
        if run is None:
            if state.status.finished:
                msg = f"Cannot cancel job {state.job_id}: it is already {state.status}"
                raise StateError(msg)
            state.status = JobStatus.CANCELLED
            state.pending = []
            state.buffers = []
            return state
        run.dispatcher.call(lambda: run.dispatcher.request_cancel(run))
        if _inside(run):
            return state  # called from the job's own task: waiting here would deadlock
        return Job(self, run).wait(timeout)

    def resume(
        self,
        state: JobState,
        timeout: float | None = None,
        *,
        store: JobStore | None = None,
        checkpoint: CheckpointPolicy | None = None,
        mapping: Mapping[str, str | None] | None = None,
    ) -> JobState:
        """Continue a paused, failed, or restored job; return its live state.

        The state may come from this process, from ``JobState.from_bytes`` in another,
        or from ``store.load(job_id)`` after a crash. Pending activations are run again
        and buffered values delivered; payloads are converted back to each slot's
        declared type.

        Args:
            state: The job's state.
            timeout: Seconds after which the job fails (default: ``execution_timeout``).
            store: Where the job's checkpoints go from now on.
            checkpoint: The policy (default: the one the job was loaded with, else
                ``"on_pause"`` with a store).
            mapping: For a flow whose shape changed: ``{"old": "new"}`` renames a node
                or ``"node.port"``; mapping one to itself accepts its new type; to
                ``None`` drops its state.

        Raises:
            StateError: the job is running, completed or cancelled.
            SnapshotError: the flow lost or retyped nodes or ports the job was started
                with (the message lists them) and ``mapping`` does not account for it.
        """
        if state.live is not None:
            msg = f"Cannot resume job {state.job_id}: it is already running"
            raise StateError(msg)
        if state.status in (JobStatus.COMPLETED, JobStatus.CANCELLED):
            msg = f"Cannot resume job {state.job_id}: it is {state.status}"
            raise StateError(msg)
        if state.flow_id != self.flow_id:
            state.shared_log.append({"event": "resume", "from_flow": state.flow_id})
        compiled = self._compile()
        check_resume(state, compiled, self.flow_id, mapping)
        state.error = None
        state.finished_at = None
        run = self._new_run(compiled, state, timeout)
        if store is not None or checkpoint is not None:
            attach(run, store, checkpoint)
        run.dispatcher.submit(run, [], resumed=True)
        return state

    def typed(self, state: JobState) -> JobState:
        """Convert a decoded state's outputs to this flow's event types, in place.

        ``JobState.from_bytes`` and stores return outputs as plain data (a Struct comes
        back as a dict); :meth:`resume` converts them itself. Use this to read a finished
        job loaded from a store.

        Raises:
            SnapshotError: an output value does not fit its event's type.
        """
        from .jobrun import convert_outputs

        return convert_outputs(self._compile(), state)

    def job(self, state: JobState) -> Job:
        """A :class:`Job` handle for a live state.

        Raises:
            StateError: the job is not running.
        """
        run = state.live
        if run is None:
            msg = f"Job {state.job_id} is not running (it is {state.status})"
            raise StateError(msg)
        return Job(self, run)

    def shutdown(self, wait: bool = True) -> None:
        """Release the worker threads this flow created. Running jobs keep their state."""
        disp = self._dispatcher
        if disp is not None:
            disp.shutdown(wait=wait)

    def _account(self, run: JobRun) -> None:
        # A resumed job's counters, including those of nodes it has not touched in this
        # process (a fresh job's are folded as its NodeRuns retire, see JobRun.recycle).
        # Plain lists, summed on the dispatcher thread; stats() freezes a copy on demand.
        totals = self._totals
        for name, rs in run.state.routine_states.items():
            t = totals.get(name)
            if t is None:
                totals[name] = [rs.activations, rs.emits, rs.errors, rs.retries, rs.busy_time, 1]
            else:
                t[0] += rs.activations
                t[1] += rs.emits
                t[2] += rs.errors
                t[3] += rs.retries
                t[4] += rs.busy_time
                t[5] += 1

    def routine_stats(self, name: str) -> RoutineStats:
        """Node ``name``'s counters summed over this flow's finished jobs (a frozen copy)."""
        t = self._totals.get(name)
        if t is None or not t[5]:
            return RoutineStats()
        a, e, err, r, busy, jobs = t
        return RoutineStats(
            activations=int(a),
            emits=int(e),
            errors=int(err),
            retries=int(r),
            busy_time=busy,
            jobs=int(jobs),
        )

    def __repr__(self) -> str:
        return (
            f"<Flow {self.flow_id!r}: {len(self.nodes)} nodes, {len(self.connections)} connections>"
        )


def _inside(run: JobRun) -> bool:
    """Whether the calling thread is running one of ``run``'s tasks (a handler pausing its job)."""
    return inside_job(run)


def _slot_label(slot: SlotSpec) -> str:
    """``name: Type`` with the policy spelled as the user wrote it (``Append[int]``…)."""
    tp = type_name(slot.type)
    if slot.policy is Policy.LATEST:
        tp = f"Latest[{tp}]"
    elif slot.policy is Policy.APPEND:
        tp = f"Append[{tp}]" if slot.batch is None else f"Append[{tp}], Batch({slot.batch})"
    elif slot.policy is Policy.REDUCE:
        tp = f"Reduce[{tp}]"
    elif slot.policy is Policy.MERGE:
        tp = f"{tp} (merge)"
    if not slot.required:
        return f"{slot.name}: {tp} = {slot.default!r}"
    return f"{slot.name}: {tp}"


def _mm(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _sccs(compiled: CompiledFlow) -> Iterator[set[int]]:
    """Tarjan's strongly connected components over the node graph."""
    succ: list[list[int]] = [[] for _ in compiled.nodes]
    for dst, preds in enumerate(compiled.preds):
        for p in preds:
            succ[p].append(dst)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on: set[int] = set()
    counter = [0]
    result: list[set[int]] = []

    def visit(v: int) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: set[int] = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            result.append(comp)

    for v in range(len(compiled.nodes)):
        if v not in index:
            visit(v)
    return iter(result)
