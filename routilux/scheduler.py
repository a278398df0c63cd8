"""The scheduler: one dispatcher per flow, fair across jobs, signalled, never polling.

Design (docs/architecture.md has the picture):

* The **dispatcher** is the only writer of every JobState of its flow. It owns a
  ring of jobs that have runnable tasks and takes one task from the job at the
  head each turn (round robin across jobs, FIFO within a job), so a long job
  cannot starve a short one.
* With ``max_workers=1`` and no executor, tasks run inline on the dispatcher
  thread: an emit delivers at once and a new activation is a deque append.
  Otherwise tasks go to a ``concurrent.futures.Executor``; workers post their
  emits and completion to the dispatcher's inbox, or apply them themselves when the
  dispatcher role is free (flat combining: no dispatcher wake-up per task).
* An **activation** is formed lazily, when the node has capacity (fewer than
  ``concurrency`` of this job's activations queued or running), so undelivered
  values wait in slot buffers, where ``Latest`` can replace them and a snapshot
  sees them.
* A collecting slot (``Append``/``Reduce``) is ready when no node that can reach it
  is active: each task start and end updates a per-slot counter (``coll_active``).
* Waiting (``Job.wait``, pause, timers) uses a lock-based latch and a timed
  ``SimpleQueue.get``: nothing sleeps in a loop.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from .error_handler import STOP, Decision
from .errors import JobTimeoutError, SnapshotError, StateError
from .job_state import (
    ErrorRecord,
    JobState,
    JobStatus,
    PendingTask,
    RoutineState,
    SlotBuffer,
    TaskRecord,
)
from .spec import Policy

if TYPE_CHECKING:
    from concurrent.futures import Executor, ThreadPoolExecutor

    from .dsl import Append as _Append
    from .flow import Flow
    from .graph import CNode, CompiledFlow
    from .remote import RemoteRunner
    from .slot import RunInput

__all__ = ["Dispatcher", "Job", "JobRun", "current_task"]

_START, _DONE, _EMIT, _CALL = 0, 1, 2, 3
_EXIT: Any = object()
_AGAIN: Any = object()


def _noop() -> None:
    pass


_POKE = (_CALL, _noop)
_perf = time.perf_counter
_now = time.time

_ctx = threading.local()
_T = TypeVar("_T")


def inside_job(run: JobRun) -> bool:
    """Whether the calling thread is running one of ``run``'s tasks (any kind of routine)."""
    return (
        threading.get_ident() == run.dispatcher._ident
        or getattr(_ctx, "job", None) is run
        or getattr(_ctx, "cur", (None,))[0] is run
    )


def current_task() -> tuple[JobRun, NodeRun, Callable[[str, Any], None]] | None:
    """The job, node and emit function of the activation running on this thread, if any."""
    cur: tuple[JobRun, NodeRun, Callable[[str, Any], None]] | None = getattr(_ctx, "cur", None)
    return cur


class Latch:
    """A one-shot event: ``threading.Event`` semantics at a lock's cost.

    ``threading.Event`` builds a Condition (about 4 µs); a job needs only "set once,
    wake every waiter", which a held lock gives: waiters acquire and release it.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._lock.release()
            return True
        return self._flag


class Inbox:
    """The dispatcher's mailbox: any thread posts; only the role holder takes.

    Messages sit in a deque that is read only by whoever holds the dispatcher role, so
    two readers can never split one task's messages (an emit and its completion) and
    apply them out of order. A doorbell queue wakes the loop thread; it carries no data.
    """

    __slots__ = ("_bell", "_q")

    def __init__(self) -> None:
        self._q: deque[tuple[Any, ...]] = deque()
        self._bell: SimpleQueue[None] = SimpleQueue()

    def put(self, msg: tuple[Any, ...]) -> None:
        self._q.append(msg)  # before the bell: a woken reader always finds the message
        self._bell.put(None)

    def empty(self) -> bool:
        return not self._q

    def get_nowait(self) -> tuple[Any, ...]:
        try:
            return self._q.popleft()
        except IndexError:
            raise Empty from None

    def wait(self, timeout: float | None) -> None:
        """Block until something was posted (or ``timeout``); raises ``Empty`` on timeout."""
        bell = self._bell
        bell.get(timeout=timeout)
        while not bell.empty():  # one wake-up serves every message already queued
            bell.get_nowait()


class _Cell:
    """Buffer of a LATEST, MERGE or REDUCE slot."""

    __slots__ = ("fresh", "has", "value")

    def __init__(self) -> None:
        self.has = False
        self.fresh = False
        self.value: Any = None


class _MergeQ(deque[Any]):
    """Buffer of a MERGE slot: the running fold, and one merged value queued per delivery."""

    __slots__ = ("has", "value")

    def __init__(self) -> None:
        super().__init__()
        self.has = False
        self.value: Any = None


class NodeRun:
    """One node within one job: slot buffers, capacity, stats."""

    __slots__ = (
        "bufs",
        "cn",
        "emit",
        "inflight",
        "job",
        "name",
        "out_keys",
        "q0",
        "routes",
        "rs",
    )

    def __init__(self, job: JobRun, cn: CNode, rs: RoutineState) -> None:
        self.job = job
        self.cn = cn
        self.name = cn.name
        self.rs = rs
        self.routes = cn.routes
        self.out_keys = cn.out_keys
        self.inflight = 0
        if cn.fast:
            q0: deque[Any] = deque()
            self.q0: deque[Any] | None = q0
            self.bufs: list[Any] = [q0]
        else:
            self.q0 = None
            self.bufs = [
                deque()
                if pol is Policy.QUEUE
                else []
                if pol is Policy.APPEND
                else _MergeQ()
                if pol is Policy.MERGE
                else _Cell()
                for pol in cn.policies
            ]
        self.emit = self._emit_inline

    def _emit_inline(self, event: str, value: Any) -> None:
        job = self.job
        if not job.live_emits:
            return
        routes = self.routes.get(event)
        if routes is None:
            _unknown_event(self, event)
        self.rs.emits += 1
        if not routes:
            job.record_output(self.out_keys[event], value)
            return
        nodes = job.nodes
        for tr, dst, si, pm in routes:
            v = value if tr is None else tr(value)
            if pm is not None:
                v = _apply_mapping(v, pm)
            nr = nodes[dst] or job.make(dst)
            q0 = nr.q0
            # Fast path of deliver(): a single-queue-slot node with capacity runs this value.
            if q0 is not None and not q0 and nr.inflight < nr.cn.concurrency and job.accepting:
                job.form(nr, (v,), 1)
            else:
                job.deliver(nr, si, v)

    def has_buffered(self) -> bool:
        for pol, buf in zip(self.cn.policies, self.bufs, strict=True):
            if pol is Policy.QUEUE or pol is Policy.APPEND or pol is Policy.MERGE:
                if buf:
                    return True
            elif buf.fresh or (pol is Policy.REDUCE and buf.has):
                return True
        return False


def _unknown_event(nr: NodeRun, event: str) -> None:
    from .errors import WiringError

    msg = f"Routine `{nr.name}` emitted unknown event `{event}` ({nr.cn.spec.describe_ports()})"
    raise WiringError(msg)


def _apply_mapping(value: Any, mapping: dict[str, str]) -> Any:
    # Classic param_mapping, as routilux 0.10 documents it: {"event_param": "slot_param"}.
    # Mapped keys are renamed; unmapped keys pass through unless they collide with a
    # mapped name (the mapped value wins).
    if not isinstance(value, dict):
        return value
    targets = mapping.values()
    out = {k: v for k, v in value.items() if k not in mapping and k not in targets}
    for source, target in mapping.items():
        if source in value:
            out[target] = value[source]
    return out


Task = tuple[NodeRun, tuple[Any, ...], int]

#: A routine's status (``RoutineState.status``) after a failure, by the policy's decision
#: (routilux 0.10's names).
_STATUS_AFTER = {
    "stop": "failed",
    "continue": "error_continued",
    "skip": "skipped",
    "retry": "retrying",
}


class JobRun:
    """A running job: the dispatcher's private structures behind one live JobState."""

    __slots__ = (
        "__dict__",
        "accepting",
        "armed",
        "cancel_requested",
        "coll_active",
        "compiled",
        "deadline_seq",
        "dispatcher",
        "done",
        "failing",
        "finished",
        "flow",
        "history",
        "history_cap",
        "history_trim",
        "in_ring",
        "inflight",
        "journal",
        "live_emits",
        "nodes",
        "on_error",
        "on_finish",
        "output_limit",
        "pause_requested",
        "restored",
        "running",
        "state",
        "t0_perf",
        "t0_wall",
        "tasks",
        "timeout",
        "waiting",
        "wall0",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        compiled: CompiledFlow,
        state: JobState,
        on_error: Any,
    ) -> None:
        self.dispatcher = dispatcher
        self.flow = dispatcher.flow
        self.compiled = compiled
        self.state = state
        self.on_error = on_error
        self.tasks: deque[Task] = deque()
        self.running: dict[int, Task] = {}
        self.inflight = 0
        self.in_ring = False
        self.accepting = False
        self.live_emits = True
        self.finished = False
        self.armed: dict[NodeRun, None] = {}
        self.done = Latch()
        self.pause_requested = False
        self.cancel_requested = False
        self.deadline_seq: int | None = None
        self.t0_perf = _perf()
        self.t0_wall = _now()
        self.history = state.history
        self.history_cap = max(state.history_limit, 0)
        self.history_trim = self.history_cap + min(256, self.history_cap // 4)
        self.wall0 = self.t0_wall - self.t0_perf
        self.output_limit = state.output_limit
        self.on_finish: list[Callable[[JobRun], None]] = []
        self.failing = False
        self.timeout: float | None = None
        self.restored: list[Task] = []
        self.journal: Any = None
        self.waiting: dict[int, Task] = {}  # retries waiting on a timer, by timer seq
        # NodeRuns are made on first touch: a job that visits 3 nodes of 300 pays for 3.
        self.nodes: list[NodeRun | None] = [None] * len(compiled.nodes)
        self.coll_active = [0] * compiled.n_colls
        state._run = self  # type: ignore[attr-defined]

    def make(self, index: int) -> NodeRun:
        """The NodeRun of node ``index``, made on first use."""
        nr = self.nodes[index]
        if nr is None:
            cn = self.compiled.nodes[index]
            rstates = self.state.routine_states
            rs = rstates.get(cn.name)
            if rs is None:
                rs = rstates[cn.name] = RoutineState()
            pool = cn.pool
            if pool:
                nr = pool.pop()
                nr.job = self
                nr.rs = rs
            else:
                nr = NodeRun(self, cn, rs)
            self.nodes[index] = nr
        return nr

    def recycle(self) -> None:
        """Return this finished job's single-queue NodeRuns to their node's free list.

        Making a NodeRun is about a third of a short job's cost; a finished job's are
        reset (empty buffer, nothing in flight) and reused by the next job. Only the
        dispatcher thread makes and recycles them. Tasks abandoned after a timeout still
        hold theirs, but their emits and results are dropped by token (see _handle).
        """
        nodes = self.nodes
        for i, nr in enumerate(nodes):
            if nr is None:
                continue
            nodes[i] = None
            q0 = nr.q0
            if q0 is None or nr.inflight:
                continue
            q0.clear()
            pool = nr.cn.pool
            if len(pool) < 32:
                pool.append(nr)

    def node_run(self, name: str) -> NodeRun | None:
        """The NodeRun of the node called ``name``, or ``None`` if the flow has no such node."""
        cn = self.compiled.by_name.get(name)
        return None if cn is None else self.make(cn.index)

    def touched(self) -> list[NodeRun]:
        """The NodeRuns made so far."""
        return [nr for nr in self.nodes if nr is not None]

    # -- delivery and activation (dispatcher thread only) ----------------------------

    def deliver(self, nr: NodeRun, si: int, value: Any) -> None:
        q0 = nr.q0
        if q0 is not None:
            if nr.inflight < nr.cn.concurrency and self.accepting and not q0:
                self.form(nr, (value,), 1)
            else:
                q0.append(value)
            return
        pol = nr.cn.policies[si]
        buf = nr.bufs[si]
        if pol is Policy.QUEUE:
            buf.append(value)
        elif pol is Policy.LATEST:
            buf.value = value
            buf.has = buf.fresh = True
        elif pol is Policy.APPEND:
            if not buf:
                self.arm(nr)
            buf.append(value)
            if self.coll_active[nr.cn.coll_ids[si]]:
                batch = nr.cn.slot_specs[si].batch
                if batch is None or len(buf) < batch:
                    # This slot is still not ready (upstream is active), so the node is no
                    # readier than before this value: release()/disarm() will wake it.
                    return
        elif pol is Policy.MERGE:
            # Fold at delivery and queue the result: every delivery fires once, with the
            # fold as it stood then, even while the node is busy (classic 0.10 semantics).
            spec = nr.cn.slot_specs[si]
            merge = spec.merge
            assert merge is not None
            if buf.has:
                acc = buf.value
            elif spec.initial is not spec.NO_DEFAULT:
                acc = _fresh_initial(spec.initial)
            else:
                acc = None
            buf.value = merge(acc, value)
            buf.has = True
            buf.append(buf.value)
        else:
            spec = nr.cn.slot_specs[si]
            merge = spec.merge
            assert merge is not None
            try:
                if buf.has:
                    buf.value = merge(buf.value, value)
                elif spec.initial is not spec.NO_DEFAULT:
                    buf.value = merge(_fresh_initial(spec.initial), value)
                else:
                    buf.value = value
            except Exception as exc:
                # The fold is the receiving node's: fail the job there, not in the emitter.
                self.dispatcher.fold_failed(nr, exc)
                return
            if not buf.has and pol is Policy.REDUCE:
                self.arm(nr)
            buf.has = buf.fresh = True
            if pol is Policy.REDUCE and self.coll_active[nr.cn.coll_ids[si]]:
                return  # not ready while upstream is active (see APPEND above)
        self.activate(nr)

    def arm(self, nr: NodeRun) -> None:
        if nr in self.armed:
            return
        self.armed[nr] = None
        # An armed collection blocks collections downstream of it until it fires.
        coll = self.coll_active
        me = nr.cn.index
        for cid, ni in nr.cn.desc_colls:
            if ni != me:
                coll[cid] += 1

    def disarm(self, nr: NodeRun) -> None:
        if nr not in self.armed:
            return
        del self.armed[nr]
        coll = self.coll_active
        me = nr.cn.index
        for cid, ni in nr.cn.desc_colls:
            if ni != me:
                coll[cid] -= 1
                if coll[cid] == 0:
                    other = self.nodes[ni]
                    if other is not None and other in self.armed:
                        self.activate(other)

    def activate(self, nr: NodeRun, force: bool = False) -> bool:
        """Form as many activations of ``nr`` as capacity and buffers allow."""
        formed = False
        cap = nr.cn.concurrency
        while nr.inflight < cap and self.accepting:
            if nr.q0 is not None:
                if not nr.q0:
                    break
                self.form(nr, (nr.q0.popleft(),), 1)
            else:
                args = self._take(nr, force)
                if args is None:
                    break
                self.form(nr, args, 1)
            formed = True
            force = False
        return formed

    def _take(self, nr: NodeRun, force: bool) -> tuple[Any, ...] | None:
        specs = nr.cn.slot_specs
        bufs = nr.bufs
        trigger = False
        ready: list[bool] = []
        for si, pol in enumerate(nr.cn.policies):
            buf = bufs[si]
            if pol is Policy.QUEUE or pol is Policy.MERGE:
                ok = bool(buf)
                trigger = trigger or ok
            elif pol is Policy.LATEST:
                ok = buf.has
                trigger = trigger or buf.fresh
            else:
                has = bool(buf) if pol is Policy.APPEND else buf.has
                batch = specs[si].batch
                full = batch is not None and pol is Policy.APPEND and len(buf) >= batch
                ok = has and (full or force or self.coll_active[nr.cn.coll_ids[si]] == 0)
                trigger = trigger or ok
            if not ok and specs[si].required:
                return None
            ready.append(ok)
        if not trigger:
            return None
        args: list[Any] = []
        for si, pol in enumerate(nr.cn.policies):
            spec = specs[si]
            buf = bufs[si]
            if not ready[si]:
                args.append(_fresh_initial(spec.default))
            elif pol is Policy.QUEUE or pol is Policy.MERGE:
                args.append(buf.popleft())
            elif pol is Policy.LATEST:
                buf.fresh = False
                args.append(buf.value)
            elif pol is Policy.APPEND:
                batch = spec.batch
                taken = _append_type()(buf[:batch] if batch is not None else buf)
                del buf[: len(taken)]
                args.append(taken)
            else:
                args.append(buf.value)
                buf.value = None
                buf.has = buf.fresh = False
        if nr in self.armed and not self._collecting(nr):
            self.disarm(nr)
        return tuple(args)

    def _collecting(self, nr: NodeRun) -> bool:
        for pol, buf in zip(nr.cn.policies, nr.bufs, strict=True):
            if (pol is Policy.APPEND and buf) or (pol is Policy.REDUCE and buf.has):
                return True
        return False

    def form(self, nr: NodeRun, args: tuple[Any, ...], attempt: int) -> None:
        nr.inflight += 1
        self.inflight += 1
        if nr.cn.desc_colls:
            coll = self.coll_active
            for cid, _ in nr.cn.desc_colls:
                coll[cid] += 1
        self.tasks.append((nr, args, attempt))
        if not self.in_ring:
            self.in_ring = True
            self.dispatcher.ring.append(self)

    def release(self, nr: NodeRun) -> None:
        """Account for the end of one of ``nr``'s activations and form what became ready."""
        nr.inflight -= 1
        self.inflight -= 1
        # Refill this node from its own buffers first: values waiting for capacity keep
        # the node active, so a collection downstream must not see it as quiescent.
        q0 = nr.q0
        if q0 is not None:
            if q0 and self.accepting:
                if nr.cn.concurrency == 1:
                    self.form(nr, (q0.popleft(),), 1)
                else:
                    self.activate(nr)
        elif self.accepting:
            self.activate(nr)
        if nr.cn.desc_colls:
            coll = self.coll_active
            for cid, ni in nr.cn.desc_colls:
                coll[cid] -= 1
                if coll[cid] == 0:
                    other = self.nodes[ni]
                    if other is not None and other in self.armed:
                        self.activate(other)
        if self.inflight == 0:
            self.idle()

    def idle(self) -> None:
        """Nothing queued or running: fire blocked collections (cycles), else finish."""
        if self.finished:
            return
        if self.accepting:
            for nr in list(self.armed):
                if self.activate(nr, force=True):
                    return
            self.dispatcher.finish(self, JobStatus.COMPLETED)
            return
        self.dispatcher.settle(self)

    def record_output(self, key: str, value: Any) -> None:
        outs = self.state.outputs.get(key)
        if outs is None:
            outs = self.state.outputs[key] = []
        if len(outs) < self.output_limit:
            outs.append(value)
        else:
            dropped = self.state.outputs_dropped
            dropped[key] = dropped.get(key, 0) + 1

    def record_task(self, nr: NodeRun, t0: float, dt: float, ok: bool) -> None:
        hist = self.history
        hist.append(TaskRecord(nr.name, self.wall0 + t0, dt, ok))
        if len(hist) > self.history_trim:
            self.trim_history()

    def trim_history(self) -> None:
        # Trimmed in slack-sized chunks so the list is not shifted on every task.
        hist = self.history
        extra = len(hist) - self.history_cap
        if extra > 0:
            del hist[:extra]
            self.state.history_dropped += extra

    # -- snapshots -------------------------------------------------------------------

    def snapshot(self) -> JobState:
        """A detached copy of the state with pending work and buffers filled in."""
        return self.dispatcher.call(self._snapshot_now)

    def _snapshot_now(self) -> JobState:
        st = self.state
        snap = msgspec.structs.replace(
            st,
            routine_states={
                k: msgspec.structs.replace(v, state=dict(v.state))
                for k, v in st.routine_states.items()
            },
            outputs={k: list(v) for k, v in st.outputs.items()},
            outputs_dropped=dict(st.outputs_dropped),
            history=list(st.history[-st.history_limit :] if st.history_limit else []),
            history_dropped=st.history_dropped + max(0, len(st.history) - st.history_limit),
            errors=list(st.errors),
            shared_data=dict(st.shared_data),
            shared_log=list(st.shared_log),
            execution_history=list(st.execution_history),
            pending=self._pending_list(include_running=True),
            buffers=self._buffer_list(),
        )
        return snap

    def _pending_list(self, include_running: bool) -> list[PendingTask]:
        out = list(self.state.pending)
        tasks: Iterable[Task] = self.tasks
        if include_running:
            # A retry waiting on its timer is pending work too (a snapshot must keep it).
            tasks = itertools.chain(self.running.values(), self.waiting.values(), self.tasks)
        for nr, args, attempt in tasks:
            out.append(PendingTask(node=nr.name, args=list(args), attempt=attempt))
        return out

    def _buffer_list(self) -> list[SlotBuffer]:
        out: list[SlotBuffer] = []
        for nr in self.touched():
            if nr.q0 is not None and not nr.q0:
                continue
            for spec, pol, buf in zip(nr.cn.slot_specs, nr.cn.policies, nr.bufs, strict=True):
                if pol is Policy.QUEUE or pol is Policy.APPEND:
                    if buf:
                        out.append(SlotBuffer(node=nr.name, slot=spec.name, values=list(buf)))
                elif pol is Policy.MERGE:
                    # values[0] is the running fold; the rest are queued merged values.
                    if buf.has:
                        out.append(
                            SlotBuffer(node=nr.name, slot=spec.name, values=[buf.value, *buf])
                        )
                elif buf.has:
                    out.append(
                        SlotBuffer(
                            node=nr.name, slot=spec.name, values=[buf.value], fresh=buf.fresh
                        )
                    )
        return out

    def restore(self, state: JobState) -> None:
        """Load buffers and pending activations from a paused or decoded state."""
        convert = _converter()
        convert_outputs(self.compiled, state)
        for b in state.buffers:
            nr = self.node_run(b.node)
            if nr is None:
                msg = f"Cannot resume job {state.job_id}: it buffers values for node `{b.node}`, which the flow does not have"
                raise SnapshotError(msg)
            si = nr.cn.spec.slot_index.get(b.slot)
            if si is None:
                msg = f"Cannot resume job {state.job_id}: node `{b.node}` has no slot `{b.slot}` ({nr.cn.spec.describe_ports()})"
                raise SnapshotError(msg)
            spec = nr.cn.slot_specs[si]
            values = [convert(v, spec.type, state, b.node, b.slot) for v in b.values]
            buf = nr.bufs[si]
            pol = nr.cn.policies[si]
            if pol is Policy.QUEUE:
                buf.extend(values)
            elif pol is Policy.APPEND:
                buf.extend(values)
                self.arm(nr)
            elif pol is Policy.MERGE:
                if values:
                    buf.value = values[0]
                    buf.has = True
                    buf.extend(values[1:])
            else:
                buf.value = values[-1] if values else None
                buf.has = bool(values)
                buf.fresh = b.fresh
                if pol is Policy.REDUCE and buf.has:
                    self.arm(nr)
        pending: list[Task] = []
        for p in state.pending:
            nr = self.node_run(p.node)
            if nr is None:
                msg = f"Cannot resume job {state.job_id}: it has a pending activation of node `{p.node}`, which the flow does not have"
                raise SnapshotError(msg)
            specs = nr.cn.slot_specs
            if len(p.args) != len(specs):
                msg = f"Cannot resume job {state.job_id}: a pending activation of `{p.node}` has {len(p.args)} arguments, the node has {len(specs)} slots"
                raise SnapshotError(msg)
            args = tuple(
                convert(v, _arg_type(s), state, p.node, s.name)
                for v, s in zip(p.args, specs, strict=True)
            )
            pending.append((nr, args, p.attempt))
        state.buffers = []
        state.pending = []
        self.restored = pending


def _arg_type(spec: Any) -> Any:
    if spec.policy is Policy.APPEND:
        return list[spec.type]
    return spec.type


def _fresh_initial(value: Any) -> Any:
    # Mutable defaults/initials are copied per use, so one job never sees another's list.
    if isinstance(value, list | dict | set):
        return value.copy()
    return value


def _append_type() -> type[_Append[Any]]:
    from .dsl import Append

    return Append


def convert_outputs(compiled: CompiledFlow, state: JobState) -> JobState:
    """Convert ``state.outputs`` in place to each event's declared type; return ``state``.

    A decoded snapshot holds outputs as msgspec builtins (a Struct comes back a dict);
    the flow knows each ``"node.event"`` type. Keys the flow does not know stay as they are.

    Raises:
        SnapshotError: a value does not convert to its event's type.
    """
    convert = _converter()
    for key, values in state.outputs.items():
        node, _, event = key.rpartition(".")
        cn = compiled.by_name.get(node)
        spec = cn.spec.event_index.get(event) if cn is not None else None
        if spec is None or spec.type is Any:
            continue
        values[:] = [convert(v, spec.type, state, node, event) for v in values]
    return state


def _converter() -> Callable[[Any, Any, JobState, str, str], Any]:
    def convert(value: Any, tp: Any, state: JobState, node: str, slot: str) -> Any:
        if tp is Any or tp is object:
            return value
        try:
            if isinstance(tp, type) and isinstance(value, tp):
                return value
        except TypeError:
            pass
        try:
            return msgspec.convert(value, tp, strict=False)
        except (msgspec.ValidationError, TypeError) as exc:
            msg = f"Cannot resume job {state.job_id}: a value for `{node}.{slot}` does not convert to the slot's type: {exc}"
            raise SnapshotError(msg) from exc

    return convert


_with_loops: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
_exit_hook_registered = False


def _exit_hook(disp: Dispatcher) -> None:
    """Make sure interpreter exit releases ``disp``'s worker loops.

    Worker loops block in ``SimpleQueue.get``; at exit ``concurrent.futures`` joins its
    threads, which would wait forever on a loop. The hook (registered once, when the
    first loop starts, not at import) is run by ``threading`` before that join.
    """
    global _exit_hook_registered
    _with_loops.add(disp)
    if not _exit_hook_registered:
        _exit_hook_registered = True
        threading._register_atexit(_release_all_loops)  # type: ignore[attr-defined]


def _release_all_loops() -> None:
    for disp in list(_with_loops):
        disp._stop_loops()


class Dispatcher:
    """Runs the jobs of one flow; see the module docstring."""

    def __init__(self, flow: Flow, max_workers: int, executor: Executor | None) -> None:
        self.flow = flow
        self.max_workers = max_workers
        self.inline = executor is None and max_workers == 1
        self._own_executor = executor is None and not self.inline
        self._executor = executor
        self._aux: ThreadPoolExecutor | None = None
        self.inbox = Inbox()
        self.ring: deque[JobRun] = deque()
        self.jobs: set[JobRun] = set()
        self.running = 0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._active = False  # a loop runs (on a thread of ours or a caller of run)
        self._role = threading.Lock()  # held by whoever acts as the dispatcher right now
        self._finished = 0  # jobs finished so far (a combining worker pokes the loop)
        self.work: SimpleQueue[tuple[JobRun, Task, int] | None] = SimpleQueue()
        self._loops = 0
        from concurrent.futures import ThreadPoolExecutor  # ~10 ms to import: on first run

        self._loops_ok = executor is None or isinstance(executor, ThreadPoolExecutor)
        # Tasks of jobs with a deadline: a worker loop blocked in one the deadline abandoned
        # stops being counted (so _submit starts another) and exits once the task returns.
        self._stuck_lock = threading.Lock()
        self._stuck_loops: set[int] = set()  # abandoned, still running on a loop
        self._returned: set[int] = set()  # returned, DONE not handled yet
        # Any other executor may run tasks in other processes: it gets the remote path
        # (routilux/remote.py), one importable function and msgspec bytes per activation.
        self.remote: RemoteRunner | None = None
        if executor is not None and not self._loops_ok:
            from .remote import RemoteRunner

            self.remote = RemoteRunner(self, executor, getattr(flow, "worker_attempts", 3))
        self._ident: int | None = None
        self._token = itertools.count()

    # -- entry points (any thread) ---------------------------------------------------

    def submit(self, job: JobRun, inputs: list[RunInput], resumed: bool) -> None:
        self._post((_START, job, inputs, resumed))

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the dispatcher thread (or now, if idle or already on it) and return its result."""
        if threading.get_ident() == self._ident:
            return fn()
        box: list[_T] = []
        err: list[BaseException] = []
        ev = threading.Event()

        def wrapped() -> None:
            try:
                box.append(fn())
            except BaseException as exc:
                err.append(exc)
            finally:
                ev.set()

        self._post((_CALL, wrapped))
        ev.wait()
        if err:
            raise err[0]
        return box[0]

    def _post(self, msg: tuple[Any, ...]) -> None:
        with self._lock:
            self.inbox.put(msg)
            if not self._active:
                self._active = True
                self._start_thread()

    def _start_thread(self) -> None:
        threading.Thread(
            target=self._loop, name=f"routilux-{self.flow.flow_id}", daemon=True
        ).start()

    def run_here(self, job: JobRun, inputs: list[RunInput], resumed: bool) -> None:
        """Start ``job`` and, if no dispatcher loop is active, be the dispatcher until it stops.

        A blocking ``flow.run`` thus costs no thread hand-off; jobs started meanwhile by
        other threads are served fairly too, and a background thread takes over whatever
        is left when ``job`` stops.

        Raises:
            StateError: called from a routine of this flow on the dispatcher thread (the
                job could never run: use ``flow.start`` there).
        """
        if threading.get_ident() == self._ident:
            msg = (
                f"flow.run on flow {self.flow.flow_id!r} from inside one of its own routines "
                "would wait for itself; use flow.start(...) there"
            )
            raise StateError(msg)
        with self._lock:
            self.inbox.put((_START, job, inputs, resumed))
            if self._active:
                return
            self._active = True
        self._loop(until=job)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the worker loops, and the executor this dispatcher created.

        A passed-in executor is the caller's to shut down; its threads are released
        from our loops here, so its own shutdown does not wait on them.
        """
        self._stop_loops()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=wait)
            self._executor = None
        if self._aux is not None:
            self._aux.shutdown(wait=wait)
            self._aux = None

    # -- the loop (dispatcher thread) ------------------------------------------------

    def _loop(self, until: JobRun | None = None) -> None:
        me = threading.get_ident()
        inbox = self.inbox
        role = self._role
        try:
            while True:
                with role:
                    self._ident = me
                    step = self._step(until)
                if step is _EXIT:
                    return
                if step is _AGAIN:
                    continue
                with contextlib.suppress(Empty):
                    inbox.wait(step)
        except BaseException:
            with self._lock:
                self._active = False
                self._ident = None
            raise

    def _step(self, until: JobRun | None) -> Any:
        """One turn of the loop (holding the role lock): ``_EXIT``, ``_AGAIN`` or a wait timeout."""
        inbox = self.inbox
        ring = self.ring
        handle = self._handle
        while not inbox.empty():
            handle(inbox.get_nowait())
        if self._timers:
            self._fire_timers()
        if until is not None and until.done.is_set():
            self._hand_off()
            return _EXIT
        if ring:
            if not self.inline:
                self._submit_ready(ring)
            elif not self.running:  # else wait for the offloaded task (one at a time)
                self._run_inline(inbox, ring, until)
                return _AGAIN
        if self._timers:
            return max(0.0, self._timers[0][0] - _perf())
        if not self.jobs and not self.running:
            with self._lock:
                if inbox.empty():
                    self._stop_loops()
                    self._active = False
                    self._ident = None
                    return _EXIT
            return _AGAIN
        return None

    def _combine(self, msg: tuple[Any, ...]) -> bool:
        """From a worker: apply ``msg`` as the dispatcher if the role is free (flat combining).

        The worker that finishes a task usually finds the role lock free: it applies its
        own emits and completion, drains what other workers posted, and submits what
        became ready, sparing the dispatcher thread a wake-up per task. The lock keeps
        one writer at a time; a busy lock means the messages go to the inbox as before.
        Returns whether they were applied.
        """
        role = self._role
        if not role.acquire(blocking=False):
            return False
        prev = self._ident
        self._ident = threading.get_ident()
        finished = self._finished
        try:
            handle = self._handle
            handle(msg)
            inbox = self.inbox
            # get_nowait: the loop thread may take a message between empty() and get().
            while True:
                try:
                    queued = inbox.get_nowait()
                except Empty:
                    break
                handle(queued)
            if self.ring and not self.inline:
                self._submit_ready(self.ring)
            poke = (
                bool(self._timers)
                or finished != self._finished
                or not self.jobs
                or (self.inline and bool(self.ring))  # inline tasks run on the loop's thread
            )
        finally:
            self._ident = prev
            role.release()
        if poke:
            # Timers, idle exit and a caller's finished job are the loop's business.
            self.inbox.put(_POKE)
        return True

    def _hand_off(self) -> None:
        # The caller's job is done: leave the rest (if any) to a background thread.
        with self._lock:
            self._ident = None
            idle = self.inbox.empty() and not self.jobs and not self.running
            if idle and not self._timers:
                self._stop_loops()
                self._active = False
                return
            self._start_thread()

    def _run_inline(self, inbox: Inbox, ring: deque[JobRun], until: JobRun | None) -> None:
        run = self._run_task
        n = 0
        while ring:
            job = ring[0]
            tasks = job.tasks
            if not tasks:
                ring.popleft()
                job.in_ring = False
                continue
            task = tasks.popleft()
            if tasks:
                ring.rotate(-1)
            else:
                ring.popleft()
                job.in_ring = False
            if task[0].cn.offload or job.timeout is not None:
                # A task that may time out runs off this thread, so the deadline can fire
                # while it blocks; the loop waits for it before running anything else.
                self._submit(job, task, aux=True)
                return
            else:
                run(job, task)
            if until is not None and until.finished:
                return
            n += 1
            if n >= 64:
                n = 0
                if not inbox.empty() or self._timers:
                    return

    def _run_task(self, job: JobRun, task: Task) -> None:
        # The inline hot path: kept flat on purpose (each call costs ~50 ns here).
        nr = task[0]
        cn = nr.cn
        if cn.needs_context:
            _ctx.cur = (job, nr, nr.emit)
        t0 = _perf()
        try:
            cn.invoke(task[1], nr.emit)
        except Exception as exc:
            dt = _perf() - t0
            if cn.needs_context:
                _ctx.cur = None
            rs = nr.rs
            rs.busy_time += dt
            rs.activations += 1
            job.record_task(nr, t0, dt, False)
            self._failed(job, task, exc)
            return
        dt = _perf() - t0
        if cn.needs_context:
            _ctx.cur = None
        rs = nr.rs
        rs.activations += 1
        rs.busy_time += dt
        hist = job.history
        hist.append(TaskRecord(nr.name, job.wall0 + t0, dt, True))
        if len(hist) > job.history_trim:
            job.trim_history()
        job.release(nr)
        if job.journal is not None:
            job.journal.task_end(task)

    def _submit_ready(self, ring: deque[JobRun]) -> None:
        while ring and self.running < self.max_workers:
            job = ring[0]
            if not job.tasks:
                ring.popleft()
                job.in_ring = False
                continue
            task = job.tasks.popleft()
            if job.tasks:
                ring.rotate(-1)
            else:
                ring.popleft()
                job.in_ring = False
            self._submit(job, task, aux=False)

    def _executor_for(self, aux: bool) -> Executor:
        from concurrent.futures import ThreadPoolExecutor

        if aux or self.inline:
            if self._aux is None:
                self._aux = ThreadPoolExecutor(
                    max_workers=max(2, self.max_workers), thread_name_prefix="routilux-aux"
                )
            return self._aux
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="routilux-worker"
            )
        return self._executor

    def _submit(self, job: JobRun, task: Task, aux: bool) -> None:
        token = next(self._token)
        job.running[token] = task
        self.running += 1
        nr = task[0]
        timeout = nr.cn.spec.timeout
        if timeout is not None:
            self.after(timeout, lambda: self._timed_out(job, token, timeout))
        # A task that may be abandoned after its timeout must not hold a worker loop: the
        # loop would stay blocked in it and the work queued behind it would never run.
        abandonable = timeout is not None and self._loops_ok
        if aux or not self._loops_ok or abandonable:
            if self.remote is not None and not aux:
                self.remote.submit(job, task, token)
                return
            self._executor_for(aux or abandonable).submit(self._work, job, task, token)
            return
        # Thread executors get long-lived worker loops fed by a queue: one submit per
        # loop instead of one Future per task.
        self.work.put((job, task, token))
        if self._loops < self.running and self._loops < self.max_workers:
            if not self._loops:
                _exit_hook(self)
            self._loops += 1
            self._executor_for(False).submit(self._worker_loop)

    def _worker_loop(self) -> None:
        get = self.work.get
        work = self._work
        while True:
            item = get()
            if item is None:
                return
            if work(*item):
                return  # abandoned at its job's deadline: this loop was replaced

    def _stop_loops(self) -> None:
        # SimpleQueue.put is thread-safe: shutdown and the exit hook may call this too.
        n, self._loops = self._loops, 0
        for _ in range(n):
            self.work.put(None)

    def _work(self, job: JobRun, task: Task, token: int) -> bool:
        nr, args, _ = task
        cn = nr.cn
        exc: BaseException | None = None
        put = self.inbox.put
        combine = self._combine
        queued = False

        def emit(event: str, value: Any) -> None:
            # Applied at once when the role is free; else posted. Once one message of this
            # task is posted, the rest follow it through the inbox, so none overtakes another.
            nonlocal queued
            msg = (_EMIT, nr, event, value, job, token)
            if queued or not combine(msg):
                queued = True
                put(msg)

        t0 = _perf()
        if cn.needs_context:
            _ctx.cur = (job, nr, emit)
        # Lets flow.pause/cancel called from this task see it must not wait for itself.
        _ctx.job = job
        try:
            cn.invoke(args, emit)
        except BaseException as e:
            exc = e
        finally:
            _ctx.job = None
            if cn.needs_context:
                _ctx.cur = None
        leave = False
        if job.timeout is not None:
            with self._stuck_lock:
                if token in self._stuck_loops:
                    self._stuck_loops.discard(token)
                    leave = True
                else:
                    self._returned.add(token)
        done = (_DONE, job, token, exc, t0, _perf() - t0)
        if queued or not combine(done):
            put(done)
        return leave

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == _EMIT:
            nr = msg[1]
            if msg[5] not in msg[4].running:
                return  # the task was abandoned after a timeout: its emits are dropped
            if msg[4].journal is not None:
                msg[4].journal.hold(msg)  # applied when the task ends: one record per task
                return
            try:
                nr._emit_inline(msg[2], msg[3])
            except Exception as exc:
                self._emit_failed(nr, exc)
        elif kind == _DONE:
            _, job, token, failure, t0, dt = msg
            task = job.running.pop(token, None)
            if task is None:
                if job.timeout is not None:
                    self._returned.discard(token)
                return  # abandoned after a timeout; its late result is dropped
            self.running -= 1
            if job.timeout is not None:
                self._returned.discard(token)
            nr = task[0]
            if job.journal is not None:
                job.journal.release_held(token)
            nr.rs.activations += 1
            nr.rs.busy_time += dt
            job.record_task(nr, t0, dt, failure is None)
            if failure is not None:
                self._failed(job, task, failure)
            else:
                job.release(nr)
                if job.journal is not None:
                    job.journal.task_end(task)
        elif kind == _START:
            self._start(msg[1], msg[2], msg[3])
        else:
            msg[1]()

    def fold_failed(self, nr: NodeRun, exc: Exception) -> None:
        """A ``Reduce`` fold raised while a value was delivered to ``nr``: fail the job."""
        job = nr.job
        record = self._record_error(job, nr, exc, 1)
        if not job.finished and not job.failing:
            self._stop(job, record)

    def _emit_failed(self, nr: NodeRun, exc: Exception) -> None:
        # Pool mode: the emitting task is still running; fail the job at once.
        job = nr.job
        self._record_error(job, nr, exc, 1)
        if not job.finished and job.state.status is JobStatus.RUNNING:
            self._stop(job, job.state.errors[-1])

    # -- timers ----------------------------------------------------------------------

    def after(self, delay: float, fn: Callable[[], None]) -> int:
        """Run ``fn`` on the dispatcher thread after ``delay`` seconds (dispatcher thread only)."""
        seq = next(self._seq)
        heapq.heappush(self._timers, (_perf() + delay, seq, fn))
        return seq

    def cancel_timer(self, seq: int) -> None:
        timers = self._timers
        for i, entry in enumerate(timers):
            if entry[1] == seq:
                timers[i] = timers[-1]
                timers.pop()
                heapq.heapify(timers)
                return

    def _fire_timers(self) -> None:
        now = _perf()
        timers = self._timers
        while timers and timers[0][0] <= now:
            fn = heapq.heappop(timers)[2]
            fn()

    # -- job lifecycle ---------------------------------------------------------------

    def _start(self, job: JobRun, inputs: list[RunInput], resumed: bool) -> None:
        st = job.state
        self.jobs.add(job)
        st.status = JobStatus.RUNNING
        if st.started_at is None:
            st.started_at = _now()
        try:
            if resumed:
                job.restore(st)
        except SnapshotError as exc:
            self._record_error(job, None, exc, 1)
            self.finish(job, JobStatus.FAILED)
            return
        timeout = job.timeout
        if timeout is not None:
            job.deadline_seq = self.after(timeout, lambda: self._deadline(job, timeout))
        touched: list[NodeRun] = []
        for inp in inputs:
            nr = job.node_run(inp.slot.node.node_name)
            assert nr is not None  # flow.start checked the inputs
            si = nr.cn.spec.slot_index[inp.slot.name]
            job.deliver(nr, si, inp.value)
            touched.append(nr)
        if job.failing:
            return  # delivering an input failed the job (a Reduce fold raised)
        job.accepting = True
        for nr, args, attempt in job.restored:
            job.form(nr, args, attempt)
        job.restored = []
        for nr in job.touched() if resumed else touched:
            job.activate(nr)
        if not resumed:
            # A routine with no slots is a source: it runs once at the start of each job.
            for index in job.compiled.sources:
                job.form(job.make(index), (), 1)
        if job.journal is not None:
            job.journal.started()
        if job.inflight == 0:
            job.idle()

    def _failed(self, job: JobRun, task: Task, exc: BaseException) -> None:
        nr, args, attempt = task
        record = self._record_error(job, nr, exc, attempt)
        if job.finished or not job.live_emits:
            job.release(nr)
            return
        policy = nr.cn.spec.on_error or job.on_error or STOP
        try:
            decision: Decision = policy.decide(exc, attempt)
        except Exception as perr:
            self._record_error(job, nr, perr, attempt)
            decision = Decision("stop")
        nr.rs.status = _STATUS_AFTER.get(decision.action, "failed")
        if decision.action == "retry":
            nr.rs.retries += 1

            # The activation stays in flight (counted) while it waits for its retry;
            # pause and cancel take it out of the timer heap (see _drain).
            def again() -> None:
                job.waiting.pop(seq, None)
                if job.finished or not job.accepting:
                    job.state.pending.append(
                        PendingTask(node=nr.name, args=list(args), attempt=attempt + 1)
                    )
                    job.release(nr)
                    return
                job.tasks.append((nr, args, attempt + 1))
                if not job.in_ring:
                    job.in_ring = True
                    self.ring.append(job)

            seq = self.after(decision.delay, again)
            job.waiting[seq] = (nr, args, attempt + 1)
            return
        if decision.action == "stop":
            job.state.pending.append(PendingTask(node=nr.name, args=list(args), attempt=attempt))
            self._stop(job, record)
        job.release(nr)
        if job.journal is not None and not job.failing:
            job.journal.task_end(task, failed=True)

    def _record_error(
        self, job: JobRun, nr: NodeRun | None, exc: BaseException, attempt: int
    ) -> ErrorRecord:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        record = ErrorRecord(
            node=nr.name if nr else None,
            type=type(exc).__qualname__,
            message=str(exc),
            traceback=tb,
            attempt=attempt,
            at=_now(),
        )
        if nr is not None:
            nr.rs.errors += 1
            nr.rs.last_error = record
        errors = job.state.errors
        errors.append(record)
        if len(errors) > max(job.history_cap, 16):
            del errors[0]
        return record

    def _stop(self, job: JobRun, record: ErrorRecord) -> None:
        """Fail ``job``: keep queued work as pending, let running tasks end, then finish."""
        job.state.error = record
        job.failing = True
        self._drain(job, keep=True)
        job.live_emits = False
        self.settle(job)

    def _drain(self, job: JobRun, keep: bool) -> None:
        job.accepting = False
        for seq in list(job.waiting):
            self.cancel_timer(seq)
            job.tasks.append(job.waiting.pop(seq))
        while job.tasks:
            nr, args, attempt = job.tasks.popleft()
            if keep:
                job.state.pending.append(
                    PendingTask(node=nr.name, args=list(args), attempt=attempt)
                )
            nr.inflight -= 1
            job.inflight -= 1
            for cid, _ in nr.cn.desc_colls:
                job.coll_active[cid] -= 1

    def settle(self, job: JobRun) -> None:
        """A job that stopped accepting work finishes once its running tasks are done."""
        if job.finished or job.running:
            return
        if job.inflight > 0:
            return  # retries waiting on a timer still hold the job
        if job.cancel_requested:
            self.finish(job, JobStatus.CANCELLED)
        elif job.failing:
            self.finish(job, JobStatus.FAILED)
        elif job.pause_requested:
            self.finish(job, JobStatus.PAUSED)

    def finish(self, job: JobRun, status: JobStatus) -> None:
        if job.finished:
            return
        self._finished += 1
        st = job.state
        if job.deadline_seq is not None:
            self.cancel_timer(job.deadline_seq)
        if status is JobStatus.PAUSED:
            st.pending = job._pending_list(include_running=False)
            st.buffers = job._buffer_list()
        elif status is JobStatus.FAILED or status is JobStatus.COMPLETED:
            st.buffers = job._buffer_list()
        else:  # cancelled: pending work is dropped
            st.pending = []
            st.buffers = []
        job.finished = True
        job.accepting = False
        job.live_emits = False
        st.status = status
        if status is not JobStatus.PAUSED:
            st.finished_at = _now()
            self.flow._account(job)
        hist = st.history
        if len(hist) > st.history_limit:
            extra = len(hist) - st.history_limit
            del hist[:extra]
            st.history_dropped += extra
        self.jobs.discard(job)
        if job.in_ring:
            with contextlib.suppress(ValueError):
                self.ring.remove(job)
            job.in_ring = False
        for cb in job.on_finish:
            try:
                cb(job)
            except Exception as exc:
                self._record_error(job, None, exc, 1)
        if status is not JobStatus.PAUSED:
            job.recycle()
        # Detached only after the callbacks (e.g. a store's final write): flow.wait(state)
        # returns once `state.live` is None, and must not return before they are done.
        st._run = None  # type: ignore[attr-defined]
        job.done.set()

    # -- control (dispatcher thread) -------------------------------------------------

    def request_pause(self, job: JobRun) -> None:
        if job.finished:
            return
        job.pause_requested = True
        job.accepting = False
        self._requeue_to_pending(job)
        self.settle(job)

    def _requeue_to_pending(self, job: JobRun) -> None:
        self._drain(job, keep=True)

    def request_cancel(self, job: JobRun) -> None:
        if job.finished:
            return
        job.cancel_requested = True
        self._drain(job, keep=False)
        job.live_emits = False
        self.settle(job)

    def _deadline(self, job: JobRun, timeout: float) -> None:
        if job.finished:
            return
        exc = JobTimeoutError(f"Job {job.state.job_id} ran past its timeout of {timeout:g} s")
        record = self._record_error(job, None, exc, 1)
        self._stop(job, record)
        # The job ends at its deadline: running activations are abandoned (kept as pending
        # for a resume; their late emits and results are dropped, see _handle).
        for token in list(job.running):
            nr, args, attempt = job.running.pop(token)
            self.running -= 1
            if not self.inline and self._loops_ok and nr.cn.spec.timeout is None:
                with self._stuck_lock:
                    if token in self._returned:
                        self._returned.discard(token)  # its loop has already moved on
                    else:
                        self._stuck_loops.add(token)  # the loop leaves when it returns
                        self._loops -= 1
            job.state.pending.append(PendingTask(node=nr.name, args=list(args), attempt=attempt))
            job.release(nr)

    def _timed_out(self, job: JobRun, token: int, timeout: float) -> None:
        task = job.running.pop(token, None)
        if task is None:
            return
        self.running -= 1
        nr = task[0]
        err = TimeoutError(
            f"Routine `{nr.name}` activation ran past its timeout of {timeout:g} s (abandoned)"
        )
        nr.rs.activations += 1
        self._failed(job, task, err)


class Job:
    """A handle on a job started with ``flow.start``: its live state and its controls."""

    def __init__(self, flow: Flow, run: JobRun) -> None:
        self._flow = flow
        self._run = run

    @property
    def state(self) -> JobState:
        """The job's live state (a plain Struct once the job has finished)."""
        return self._run.state

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self._run.state.job_id

    @property
    def status(self) -> JobStatus:
        """The job's current status."""
        return self._run.state.status

    def done(self) -> bool:
        """Whether the job has stopped running (finished or paused)."""
        return self._run.done.is_set()

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job stops running (finished or paused) and return its state.

        Raises:
            JobTimeoutError: the job is still running after ``timeout`` seconds (it goes on).
        """
        if not self._run.done.wait(timeout):
            msg = f"Job {self.job_id} still {self.status} after waiting {timeout:g} s"
            raise JobTimeoutError(msg)
        return self._run.state

    def pause(self, timeout: float | None = None) -> JobState:
        """Stop dispatching, let running tasks finish, keep queued work as pending."""
        return self._flow.pause(self._run.state, timeout=timeout)

    def cancel(self, timeout: float | None = None) -> JobState:
        """Drop pending work; the status becomes ``cancelled`` once running tasks end."""
        return self._flow.cancel(self._run.state, timeout=timeout)

    def result(self, key: str | None = None, timeout: float | None = None) -> list[Any]:
        """Wait, then return the values of terminal output ``key`` (the only one by default).

        Raises:
            StateError: the job did not complete.
            KeyError: no such output.
        """
        state = self.wait(timeout)
        if state.status is not JobStatus.COMPLETED:
            where = (
                f": {state.error.type} in `{state.error.node}`: {state.error.message}"
                if state.error
                else ""
            )
            msg = f"Job {state.job_id} is {state.status}{where}"
            raise StateError(msg)
        if key is None:
            if len(state.outputs) != 1:
                known = ", ".join(sorted(state.outputs)) or "none"
                msg = f"Job {state.job_id} has {len(state.outputs)} outputs ({known}); pass key="
                raise KeyError(msg)
            key = next(iter(state.outputs))
        return state.output(key)

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.status}>"
