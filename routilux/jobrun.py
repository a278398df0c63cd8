"""One job as the dispatcher runs it: JobRun, NodeRun, slot buffers, and their signals.

The dispatcher (:mod:`routilux.scheduler`) is the only writer of these structures;
see its docstring for the design. Here live delivery and lazy activation
(``JobRun.deliver``/``activate``/``_take``), the collection counters
(``coll_active``), snapshots and restore, and the small primitives the engine
waits on (``Latch``, ``Inbox``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from queue import Empty, SimpleQueue
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec

from .errors import SnapshotError
from .job_state import (
    JobState,
    JobStatus,
    PendingTask,
    RoutineState,
    SlotBuffer,
    TaskRecord,
)
from .spec import Policy

if TYPE_CHECKING:
    from .dsl import Append as _Append
    from .graph import CNode, CompiledFlow
    from .scheduler import Dispatcher

__all__ = ["Inbox", "JobRun", "Latch", "NodeRun", "Task", "convert_outputs", "current_task"]


_START, _DONE, _EMIT, _CALL, _BATCH, _TAIL = 0, 1, 2, 3, 4, 5
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
    """A one-shot event: ``threading.Event`` semantics at a lock's cost, or less.

    ``threading.Event`` builds a Condition (about 4 µs); a job needs only "set once,
    wake every waiter", which a held lock gives: waiters acquire and release it. The
    lock is made by the first waiter that has to block: a job run to its end by the
    thread that waits for it (a blocking ``flow.run``) never makes one.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock: threading.Lock | None = None

    def set(self) -> None:
        if self._flag:
            return
        with _LATCHES:  # against a waiter making the lock right now
            self._flag = True
            lock = self._lock
        if lock is not None:
            lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        with _LATCHES:
            if self.is_set():  # set meanwhile (a call: mypy keeps the first check's narrowing)
                return True
            lock = self._lock
            if lock is None:
                lock = self._lock = threading.Lock()
                lock.acquire()
        if lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            lock.release()  # the next waiter's turn
            return True
        return self._flag


#: Guards the lazy lock of every Latch (held for a few instructions at a time).
_LATCHES = threading.Lock()


class Inbox:
    """The dispatcher's mailbox: any thread posts; only the role holder takes.

    Messages sit in a deque that is read only by whoever holds the dispatcher role, so
    two readers can never split one task's messages (an emit and its completion) and
    apply them out of order. A doorbell queue wakes the loop thread; it carries no data.
    """

    __slots__ = ("_bell", "_q", "messages")

    def __init__(self) -> None:
        # The messages, in order: the role holder drains them directly (``while q:``).
        self._q: deque[tuple[Any, ...]] = deque()
        self.messages = self._q
        self._bell: SimpleQueue[None] = SimpleQueue()

    def put(self, msg: tuple[Any, ...]) -> None:
        self._q.append(msg)  # before the bell: a woken reader always finds the message
        self._bell.put(None)

    def put_quiet(self, msg: tuple[Any, ...]) -> None:
        """Queue ``msg`` without ringing: for a poster about to read the inbox itself.

        A ring that no loop answers would stay in the doorbell's queue for good (one
        per blocking ``flow.run``).
        """
        self._q.append(msg)

    def silence(self) -> None:
        """Drop stale rings (the caller holds the role and the inbox is empty)."""
        bell = self._bell
        while not bell.empty():
            bell.get_nowait()

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
            nr = nodes[dst] or job.new_node_run(dst)
            q0 = nr.q0
            cn = nr.cn
            # Fast path of deliver(): a single-queue-slot node with capacity runs this
            # value. form() is inlined here (one call less per task).
            if q0 is not None and not q0 and nr.inflight < cn.concurrency and job.accepting:
                nr.inflight += 1
                job.inflight += 1
                if cn.desc_colls:
                    coll = job.coll_active
                    for cid, _ in cn.desc_colls:
                        coll[cid] += 1
                job.tasks.append((nr, (v,), 1))
                if not job.in_ring:
                    job.in_ring = True
                    job.dispatcher.ring.append(job)
            else:
                job.deliver(nr, si, v)

    def _emit_guarded(self, event: str, value: Any) -> None:
        # A guarded job's emits run under the user lock, so a waiter that abandons the
        # job (Dispatcher.await_deadline) never snapshots it halfway through an emit.
        job = self.job
        with job.dispatcher._user_lock:
            if job.abandoned:
                return
            self._emit_inline(event, value)

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
_NO_TASKS: Mapping[int, Task] = MappingProxyType({})

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

    # Attributes read or written per task live in slots; the rarely set ones start as
    # class-level defaults (immutable, replaced on first write), so starting a job
    # sets a third as many attributes.
    __slots__ = (
        "__dict__",
        "accepting",
        "armed",
        "coll_active",
        "compiled",
        "dispatcher",
        "done",
        "finished",
        "flow",
        "guarded",
        "history",
        "history_cap",
        "history_trim",
        "in_ring",
        "inflight",
        "journal",
        "live_emits",
        "nodes",
        "on_error",
        "output_limit",
        "running",
        "state",
        "tasks",
        "wall0",
    )

    abandoned = False
    resumed = False  # started from a restored or paused state
    cancel_requested = False
    pause_requested = False
    failing = False
    deadline_seq: int | None = None
    # Inline jobs with a timeout ("guarded"): the deadline (perf_counter time), and
    # whether a waiter gave up on the job while the dispatcher was stuck in user code.
    deadline_at: float | None = None
    timeout: float | None = None
    restored: Sequence[Task] = ()
    on_finish: Sequence[Callable[[JobRun], None]] = ()
    # Retries waiting on a timer, by timer seq. The default is a shared read-only empty
    # mapping; the retry path gives a job its own dict before the first write.
    waiting: dict[int, Task] = cast("dict[int, Task]", _NO_TASKS)

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
        self.guarded = False
        self.journal: Any = None
        self.armed: dict[NodeRun, None] = {}
        self.done = Latch()
        # Task records carry wall-clock start times measured on the monotonic clock.
        self.wall0 = _now() - _perf()
        self.history = state.history
        cap = state.history_limit
        self.history_cap = cap if cap > 0 else 0
        self.history_trim = self.history_cap + (self.history_cap >> 2 if cap < 1024 else 256)
        self.output_limit = state.output_limit
        # NodeRuns are made on first touch: a job that visits 3 nodes of 300 pays for 3.
        n = len(compiled.nodes)
        self.nodes: list[NodeRun | None] = [None] * n
        self.coll_active = [0] * compiled.n_colls
        state._run = self  # type: ignore[attr-defined]

    def make(self, index: int) -> NodeRun:
        """The NodeRun of node ``index``, made on first use."""
        nr = self.nodes[index]
        return self.new_node_run(index) if nr is None else nr

    def new_node_run(self, index: int) -> NodeRun:
        """Make the NodeRun of node ``index`` (it has none yet): from the free list if it can."""
        cn = self.compiled.nodes[index]
        rstates = self.state.routine_states
        rs = rstates.get(cn.name)
        if rs is None:
            rs = rstates[cn.name] = RoutineState()
        pool = cn.pool
        nr: NodeRun
        if pool:
            nr = pool.pop()
            nr.job = self
            nr.rs = rs
        else:
            nr = NodeRun(self, cn, rs)
        if self.guarded:
            nr.emit = nr._emit_guarded
        self.nodes[index] = nr
        return nr

    def recycle(self, fold: bool, reuse: bool = True) -> None:
        """Retire this finished job's NodeRuns; with ``fold``, add their counters to the flow's.

        Making a NodeRun is about a third of a short job's cost; a finished job's
        single-queue ones are reset (empty buffer, nothing in flight) and reused by the
        next job. Only the dispatcher thread makes and recycles them. Tasks abandoned
        after a timeout still hold theirs, but their emits and results are dropped by
        token (see _handle). Folding here, in the same pass, spares the flow's totals a
        second walk over the job's routine states. A guarded job's NodeRuns (their
        ``emit`` takes the user lock) are not reused: pooled ones keep ``_emit_inline``.
        """
        nodes = self.nodes
        for i, nr in enumerate(nodes):
            if nr is None:
                continue
            nodes[i] = None
            cn = nr.cn
            if fold:
                rs = nr.rs
                t = cn.totals
                t[0] += rs.activations
                t[1] += rs.emits
                t[4] += rs.busy_time
                t[5] += 1
                if rs.errors or rs.retries:
                    t[2] += rs.errors
                    t[3] += rs.retries
            q0 = nr.q0
            if q0 is None or nr.inflight or not reuse:
                continue
            if q0:
                q0.clear()
            pool = cn.pool
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
        # Inlined in NodeRun._emit_inline: change both together.
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
        # Its common case (empty single queue, no collection downstream) is inlined in
        # Dispatcher._run_task: change both together.
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
            if self.armed:
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
        for nr in self.nodes:
            if nr is None or (nr.q0 is not None and not nr.q0):
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
