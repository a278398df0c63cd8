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
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

from .error_handler import STOP, Decision
from .errors import JobTimeoutError, SnapshotError, StateError
from .job_state import (
    ErrorRecord,
    JobState,
    JobStatus,
    PendingTask,
    TaskRecord,
)
from .jobrun import (
    _AGAIN,
    _BATCH,
    _CALL,
    _DONE,
    _EMIT,
    _EXIT,
    _POKE,
    _START,
    _STATUS_AFTER,
    _T,
    _TAIL,
    Inbox,
    JobRun,
    NodeRun,
    Task,
    _ctx,
    _now,
    _perf,
)
from .jobrun import current_task as current_task  # the public name's old home

if TYPE_CHECKING:
    from concurrent.futures import Executor, ThreadPoolExecutor

    from .flow import Flow
    from .remote import RemoteRunner
    from .slot import RunInput

__all__ = ["Dispatcher", "Job", "JobRun", "current_task"]

_with_loops: weakref.WeakSet[Dispatcher] = weakref.WeakSet()

#: Seconds an idle worker loop of a flow's own pool waits for more work before it retires.
LOOP_LINGER = 2.0
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
        # Guarded jobs (inline, with a timeout): who is in user code right now, so a
        # waiter can give up on a job stuck there (await_deadline).
        self._user_lock = threading.Lock()
        self._in_user: JobRun | None = None
        self._current: Task | None = None
        self.guarded = 0
        self._gen = 0  # bumped when a waiter takes the role from a thread stuck in user code
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

    def submit(self, job: JobRun, inputs: Sequence[RunInput], resumed: bool) -> None:
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

    def run_here(self, job: JobRun, inputs: Sequence[RunInput], resumed: bool) -> None:
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
            if self._active:
                self.inbox.put((_START, job, inputs, resumed))
                return
            self._active = True
            if not self.inline or resumed:
                # No loop waits on the doorbell now: this thread reads the inbox next.
                self.inbox.put_quiet((_START, job, inputs, resumed))
        if self.inline and not resumed:
            try:
                if self._run_alone(job, inputs):
                    return
            except BaseException:
                with self._lock:
                    self._active = False
                    self._ident = None
                raise
        self._loop(until=job)

    def _run_alone(self, job: JobRun, inputs: Sequence[RunInput]) -> bool:
        """The inline fast path of run_here: start ``job`` and run it on this thread.

        What the general loop would do on its first turns, minus the inbox round trip
        for the start message. Returns whether the job is done and the role handed off;
        otherwise (a message or timer arrived, an activation went to a helper thread)
        the general loop carries on.
        """
        with self._role:
            gen = self._gen
            self._ident = threading.get_ident()
            self._start(job, inputs, False)
            ring = self.ring
            if ring and not self.running and not self._timers and self.inbox.empty():
                self._run_inline(self.inbox, ring, job)
            if gen != self._gen:
                return True  # the role was taken while this thread was stuck in user code
            if job.finished and self.inbox.empty() and not self._timers:
                self._hand_off()
                return True
        return False

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
        try:
            while True:
                role = self._role
                with role:
                    gen = self._gen
                    self._ident = me
                    step = self._step(until)
                    if gen != self._gen:
                        return  # the role was taken while this thread was stuck in user code
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
        queued = inbox.messages
        while queued:
            handle(queued.popleft())
        if self._timers:
            self._fire_timers()
        if until is not None and until.finished:
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
                    inbox.silence()
                    if self._loops and not self._own_executor:
                        self._release_loops()
                    self._active = False
                    self._ident = None
                    return _EXIT
            return _AGAIN
        return None

    def _combine(self, msg: tuple[Any, ...], keep: list[Any] | None = None) -> bool:
        """From a worker: apply ``msg`` as the dispatcher if the role is free (flat combining).

        The worker that finishes a task usually finds the role lock free: it applies its
        own emits and completion, drains what other workers posted, and submits what
        became ready, sparing the dispatcher thread a wake-up per task. The lock keeps
        one writer at a time; a busy lock means the messages go to the inbox as before.
        With ``keep`` (a worker loop's run-next slot, given at the end of a task), the
        first task submitted goes there instead of the shared queue: a chain continues
        on the thread that ran its last step, without waking another thread for it.
        Returns whether they were applied.
        """
        role = self._role
        # Positional: acquire(blocking=False) parses its keyword, ~0.2 µs a task here.
        if not role.acquire(False):
            return False
        prev = self._ident
        self._ident = threading.get_ident()
        finished = self._finished
        try:
            self._handle(msg)
            poke = self._turn_end(keep, finished)
        finally:
            self._ident = prev
            role.release()
        if poke:
            # Timers, idle exit and a caller's finished job are the loop's business.
            self.inbox.put(_POKE)
        return True

    def _turn_end(self, keep: list[Any] | None, finished: int) -> bool:
        """The rest of a combining turn, holding the role: whether the loop must be poked.

        Applies what others posted meanwhile (only the role holder reads the inbox) and
        submits what became ready; ``finished`` is ``self._finished`` at the turn's start.
        """
        queued = self.inbox.messages
        if queued:
            handle = self._handle
            while queued:
                handle(queued.popleft())
        if self.ring and not self.inline:
            self._submit_ready(self.ring, keep)
        return (
            bool(self._timers)
            or finished != self._finished
            or not self.jobs
            or (self.inline and bool(self.ring))  # inline tasks run on the loop's thread
        )

    def _hand_off(self) -> None:
        # The caller's job is done: leave the rest (if any) to a background thread.
        with self._lock:
            self._ident = None
            idle = self.inbox.empty() and not self.jobs and not self.running
            if idle and not self._timers:
                self.inbox.silence()  # rings of messages this thread already handled
                if self._loops and not self._own_executor:
                    self._release_loops()  # a user's executor: give its threads back
                self._active = False
                return
            self._start_thread()

    def _run_inline(self, inbox: Inbox, ring: deque[JobRun], until: JobRun | None) -> None:
        run = self._run_task
        gen = self._gen
        n = 0
        while ring:
            if self.guarded and self._timers and self._timers[0][0] <= _perf():
                return  # a deadline is due: fire it before running more user code
            job = ring[0]
            tasks = job.tasks
            if not tasks:
                ring.popleft()
                job.in_ring = False
                continue
            task = tasks.popleft()
            # Round robin: the next job's turn. A job alone in the ring stays there when
            # its queue runs dry: a chain's next step, formed by this task, is queued
            # without leaving and re-entering the ring. With others, it leaves at once
            # (finish() would otherwise search the ring for it).
            if len(ring) > 1:
                if tasks:
                    ring.rotate(-1)
                else:
                    ring.popleft()
                    job.in_ring = False
            if task[0].cn.offload:
                # An activation with its own timeout runs off this thread, so the timer can
                # abandon it; the loop waits for it before running anything else.
                self._submit(job, task, aux=True)
                return
            run(job, task)
            if gen != self._gen:
                return  # this thread lost the role while in user code: touch nothing
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
        guard = self.guarded
        if guard:
            with self._user_lock:
                self._in_user = job
                self._current = task
                gen = self._gen
        if cn.needs_context:
            _ctx.cur = (job, nr, nr.emit)
        direct = cn.direct
        t0 = _perf()
        try:
            if direct is None:
                cn.invoke(task[1], nr.emit)
            else:
                nr.emit("result", direct(*task[1]))
        except Exception as exc:
            dt = _perf() - t0
            if cn.needs_context:
                _ctx.cur = None
            if guard and self._leave_user(job, task, gen):
                return
            rs = nr.rs
            rs.busy_time += dt
            rs.activations += 1
            job.record_task(nr, t0, dt, False)
            self._failed(job, task, exc)
            return
        dt = _perf() - t0
        if cn.needs_context:
            _ctx.cur = None
        if guard and self._leave_user(job, task, gen):
            return
        rs = nr.rs
        rs.activations += 1
        rs.busy_time += dt
        hist = job.history
        hist.append(TaskRecord(nr.name, job.wall0 + t0, dt, True))
        if len(hist) > job.history_trim:
            job.trim_history()
        q0 = nr.q0
        if q0 is None or q0 or cn.desc_colls:
            job.release(nr)
        else:  # job.release(nr), inlined: nothing waits in this node, nothing downstream collects
            nr.inflight -= 1
            job.inflight -= 1
            if not job.inflight:
                job.idle()
        if job.journal is not None:
            job.journal.task_end(task)

    def _leave_user(self, job: JobRun, task: Task, gen: int) -> bool:
        """Back from user code of a guarded dispatcher; True if ``job`` was abandoned meanwhile.

        An abandoned job's activation left no trace (its emits were dropped): it goes
        back to pending and the job fails at its deadline, as the waiter already reported.
        If the waiter also handed the dispatcher role to a new thread (this one was stuck),
        this thread must not touch anything any more: it posts the clean-up and leaves.
        """
        with self._user_lock:
            if self._current is task:
                self._in_user = None
                self._current = None
            if not job.abandoned:
                return False
            lost = gen != self._gen
        if lost:
            self.inbox.put((_CALL, lambda: self._drop_abandoned(job, task)))
        else:
            self._drop_abandoned(job, task)
        return True

    def _drop_abandoned(self, job: JobRun, task: Task) -> None:
        nr, args, attempt = task
        job.state.pending.append(PendingTask(node=nr.name, args=list(args), attempt=attempt))
        self._deadline(job, job.timeout or 0.0)
        job.release(nr)

    def _take_over(self) -> None:
        # With the user lock held, by a waiter whose job is stuck in user code on the
        # dispatcher thread: that thread keeps the old role lock and leaves when its user
        # code returns (_leave_user sees the new generation); a new loop thread takes a
        # fresh role lock and serves every other job meanwhile.
        self._gen += 1
        self._role = threading.Lock()
        self._in_user = None
        self._current = None
        self._start_thread()

    def await_deadline(self, job: JobRun, limit: float | None = None) -> JobState | None:
        """Wait for a guarded job (inline, with a timeout) to stop; never past its deadline.

        The dispatcher fires a due deadline before it runs more user code, so once the
        deadline has passed it can only be late while it is inside user code. Then this
        waiter gives up on the job: it marks it abandoned (under the lock that user-code
        entry, exit and emits take), and returns a failed snapshot of it. The live job
        fails the same way as soon as the user code returns.
        """
        done = job.done
        deadline = job.deadline_at
        assert deadline is not None
        give_up = None if limit is None else _perf() + limit
        while True:
            remaining = deadline - _perf()
            if remaining > 0:
                if give_up is not None and give_up < deadline:
                    # The caller's own wait ends first: an ordinary timed wait.
                    return job.state if done.wait(max(0.0, give_up - _perf())) else None
                if done.wait(remaining):
                    return job.state
                continue
            with self._user_lock:
                if done.is_set():
                    return job.state
                if self._in_user is not None:
                    job.abandoned = True
                    snap = self._abandoned_snapshot(job)
                    if self._in_user is job:
                        self._take_over()
                    return snap
            # In engine code: the overdue deadline fires before any more user code runs.
            if done.wait(None if give_up is None else max(0.0, give_up - _perf())):
                return job.state
            return None

    def _abandoned_snapshot(self, job: JobRun) -> JobState:
        # Called with the user lock held while the dispatcher is in user code, so nothing
        # of this job moves (its emits wait on the lock and then drop).
        snap = job._snapshot_now()
        if self._in_user is job and self._current is not None:
            nr, args, attempt = self._current
            snap.pending.append(PendingTask(node=nr.name, args=list(args), attempt=attempt))
        exc = JobTimeoutError(
            f"Job {job.state.job_id} ran past its timeout of {job.timeout or 0.0:g} s"
        )
        record = ErrorRecord(
            node=None,
            type=type(exc).__qualname__,
            message=str(exc),
            traceback="".join(traceback.format_exception_only(type(exc), exc)),
            at=_now(),
        )
        snap.errors = [*snap.errors, record]
        snap.error = record
        snap.status = JobStatus.FAILED
        snap.finished_at = _now()
        return snap

    def _submit_ready(self, ring: deque[JobRun], keep: list[Any] | None = None) -> None:
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
            self._submit(job, task, aux=False, keep=keep)

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

    def _submit(self, job: JobRun, task: Task, aux: bool, keep: list[Any] | None = None) -> None:
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
        if keep is not None and not keep:
            keep.append((job, task, token))  # the combining worker runs it next
            return
        # Thread executors get long-lived worker loops fed by a queue: one submit per
        # loop instead of one Future per task.
        self.work.put((job, task, token))
        if self._loops < self.running and self._loops < self.max_workers:
            with self._lock:  # loops retire on their own threads (see _worker_loop)
                start = self._loops < self.running and self._loops < self.max_workers
                if start:
                    if not self._loops:
                        _exit_hook(self)
                    self._loops += 1
            if start:
                self._executor_for(False).submit(self._worker_loop)

    def _worker_loop(self) -> None:
        get = self.work.get
        work = self._work
        keep: list[tuple[JobRun, Task, int]] = []  # run next, before the shared queue
        # On our own executor an idle loop stays for the next job (restarting loops cost
        # a quarter of a short pool-mode job) and retires after LOOP_LINGER seconds
        # without work, so a flow dropped without shutdown() lets its threads go.
        # On a user's executor the dispatcher releases loops when it goes idle.
        linger = LOOP_LINGER if self._own_executor else None
        item: tuple[JobRun, Task, int] | None
        while True:
            if keep:
                item = keep.pop()
            else:
                try:
                    item = get(timeout=linger)
                except Empty:
                    with self._lock:  # work posted before this check is seen by it
                        if self.work.empty():
                            self._loops -= 1
                            return
                    continue
            if item is None:
                return
            if work(*item, keep):
                # Abandoned at its job's deadline: this loop was replaced. A task it
                # kept for itself goes to the other loops.
                if keep:
                    self.work.put(keep.pop())
                return

    def _stop_loops(self) -> None:
        """Release every worker loop (shutdown, interpreter exit)."""
        with self._lock:
            self._release_loops()

    def _release_loops(self) -> None:
        # Holding self._lock: a loop retiring meanwhile must not leave a None behind
        # for a later loop, nor miss the one meant for it.
        n, self._loops = self._loops, 0
        for _ in range(n):
            self.work.put(None)

    def _work(self, job: JobRun, task: Task, token: int, keep: list[Any] | None = None) -> bool:
        nr, args, _ = task
        cn = nr.cn
        if cn.tail_fast and job.timeout is None and job.journal is None:
            self._work_tail(job, nr, args, token, keep)
            return False
        exc: BaseException | None = None
        put = self.inbox.put
        combine = self._combine
        queued = False

        # A tail emit (a function's return value) is the task's last act: it is applied
        # with the task's completion, in one message and one turn as the dispatcher.
        held: list[tuple[Any, ...]] = []
        emit: Callable[[str, Any], None]
        if cn.spec.tail_emit:

            def emit(event: str, value: Any) -> None:
                held.append((_EMIT, nr, event, value, job, token))

        else:

            def emit(event: str, value: Any) -> None:
                # Applied at once when the role is free; else posted. Once one message of
                # this task is posted, the rest follow it through the inbox, so none
                # overtakes another.
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
        done: tuple[Any, ...] = (_DONE, job, token, exc, t0, _perf() - t0)
        if held:
            held.append(done)
            done = (_BATCH, held)
        if queued or not combine(done, None if leave else keep):
            put(done)
        return leave

    def _work_tail(
        self, job: JobRun, nr: NodeRun, args: tuple[Any, ...], token: int, keep: list[Any] | None
    ) -> None:
        """``_work`` for the common pool task: a function routine, no job timeout or journal.

        Its one emit, the return value, lands in a dict and is applied with the task's
        end: here when the role is free, else sent as one ``_TAIL`` message (no closure,
        no message per emit).
        """
        cn = nr.cn
        out: dict[str, Any] = {}
        failed: BaseException | None = None
        _ctx.job = job
        t0 = _perf()
        direct = cn.direct
        try:
            if direct is None:
                cn.invoke(args, out.__setitem__)
            else:
                out["result"] = direct(*args)
        except BaseException as e:
            failed = e
        dt = _perf() - t0
        _ctx.job = None
        role = self._role
        if failed is not None or self.inline or not role.acquire(False):
            tail = (_TAIL, job, token, failed, t0, dt, nr, out)
            if not self._combine(tail, keep):
                self.inbox.put(tail)
            return
        # The role is ours: what _combine(_TAIL message) would do, minus the message.
        prev = self._ident
        self._ident = threading.get_ident()
        finished = self._finished
        try:
            self._apply_tail(job, token, None, t0, dt, nr, out)
            poke = self._turn_end(keep, finished)
        finally:
            self._ident = prev
            role.release()
        if poke:
            self.inbox.put(_POKE)

    def _apply_tail(
        self,
        job: JobRun,
        token: int,
        failure: BaseException | None,
        t0: float,
        dt: float,
        nr: NodeRun,
        out: dict[str, Any],
    ) -> None:
        """A ``_TAIL`` task ended: deliver its emits (unless abandoned), then account for it."""
        if out and token in job.running:
            for event, value in out.items():
                try:
                    nr._emit_inline(event, value)
                except Exception as exc:
                    self._emit_failed(nr, exc)
        self._done(job, token, failure, t0, dt)

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == _TAIL:
            self._apply_tail(*msg[1:])
        elif kind == _EMIT:
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
            self._done(msg[1], msg[2], msg[3], msg[4], msg[5])
        elif kind == _START:
            self._start(msg[1], msg[2], msg[3])
        elif kind == _BATCH:
            for m in msg[1]:
                self._handle(m)
        else:
            msg[1]()

    def _done(
        self, job: JobRun, token: int, failure: BaseException | None, t0: float, dt: float
    ) -> None:
        """A task of ``job`` ended (``failure`` if it raised): account for it, form what is ready."""
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

    def _start(self, job: JobRun, inputs: Sequence[RunInput], resumed: bool) -> None:
        st = job.state
        self.jobs.add(job)
        if self.inline and job.timeout is not None:
            job.guarded = True  # before any NodeRun is made: their emits take the user lock
            self.guarded += 1
        st.status = JobStatus.RUNNING
        if st.started_at is None:
            st.started_at = _now()
        try:
            if resumed:
                job.resumed = True
                job.restore(st)
        except SnapshotError as exc:
            self._record_error(job, None, exc, 1)
            self.finish(job, JobStatus.FAILED)
            return
        timeout = job.timeout
        if timeout is not None:
            if job.deadline_at is None:
                job.deadline_at = _perf() + timeout
            job.deadline_seq = self.after(
                max(0.0, job.deadline_at - _perf()), lambda: self._deadline(job, timeout)
            )
        if not resumed and len(inputs) == 1 and not job.compiled.sources:
            # One input to a single-queue node (a blocking run's usual call): it is the
            # job's first activation, as delivering then activating would make it.
            first = job.node_run(inputs[0].slot.node.node_name)
            if first is not None and first.q0 is not None:
                job.accepting = True
                job.form(first, (inputs[0].value,), 1)
                if job.journal is not None:
                    job.journal.started()
                return
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
        if job.restored:
            for nr, args, attempt in job.restored:
                job.form(nr, args, attempt)
            job.restored = ()
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
            if not job.waiting:
                job.waiting = {}  # the class default is shared and read-only
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
        guarded = job.guarded
        if guarded:
            job.guarded = False
            self.guarded -= 1
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
            if job.resumed:
                self.flow._account(job)
        hist = st.history
        if len(hist) > st.history_limit:
            extra = len(hist) - st.history_limit
            del hist[:extra]
            st.history_dropped += extra
        self.jobs.discard(job)
        if job.in_ring:
            try:  # noqa: SIM105 - a suppress() context manager costs more than the rest here
                self.ring.remove(job)
            except ValueError:
                pass
            job.in_ring = False
        for cb in job.on_finish:
            try:
                cb(job)
            except Exception as exc:
                self._record_error(job, None, exc, 1)
        if status is not JobStatus.PAUSED:
            job.recycle(fold=not job.resumed, reuse=not guarded)
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
                        with self._lock:
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
        run = self._run
        if run.deadline_at is not None and run.dispatcher.inline:
            state = run.dispatcher.await_deadline(run, timeout)  # never past the deadline
        else:
            state = run.state if run.done.wait(timeout) else None
        if state is None:
            msg = f"Job {self.job_id} still {self.status} after waiting {timeout:g} s"
            raise JobTimeoutError(msg)
        return state

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
