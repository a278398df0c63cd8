"""Checkpoints: flow fingerprints, checkpoint policies and the every-task delta journal.

A job started with a store runs under one of three policies:

* ``manual``: nothing is written unless you call ``store.save(state)``.
* ``on_pause``: a full snapshot is written when the job pauses and when it finishes.
* ``every_task``: a full snapshot is written when the job starts; after that every
  finished task appends one **delta record** to the job's journal — the task that
  finished, the activations formed since the last record (with their arguments, i.e.
  the consumed slot values), how each slot buffer changed (values popped from the
  head, values pushed at the tail), the outputs, history and routine statistics that
  changed. A record is one atomic store write. Every ``compact_every`` records (and
  when the job pauses or finishes) the journal is folded into a new snapshot.

Recovery (:func:`replay`) decodes the last snapshot and applies the records written
after it, in order; a task whose record was not committed is still pending there, so
it runs again on resume (at-least-once tasks), while every committed effect is applied
exactly once (exactly-once state).

The journal never touches the hot path of a job without a store: the scheduler checks
``job.journal is not None`` once per finished task. In pool mode a journaled job's
emits are held until the emitting task ends, so one record holds all of a task's
effects and no record holds half of a running task's.
"""

from __future__ import annotations

import functools
import operator
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .errors import SnapshotError
from .job_state import JobState, PendingTask, RoutineState, SlotBuffer, TaskRecord
from .spec import Policy
from .typecheck import type_name

if TYPE_CHECKING:
    from .graph import CompiledFlow
    from .jobrun import JobRun, NodeRun, Task
    from .stores import JobStore

__all__ = [
    "POLICIES",
    "CheckpointPolicy",
    "Journal",
    "apply_mapping",
    "fingerprint",
    "fingerprint_diff",
    "replay",
]

CheckpointPolicy = Literal["manual", "on_pause", "every_task"]
POLICIES: tuple[str, ...] = ("manual", "on_pause", "every_task")
#: Records folded into a fresh snapshot once this many accumulate.
COMPACT_EVERY = 1000

# -- fingerprints -----------------------------------------------------------------------

_FP_CACHE: weakref.WeakKeyDictionary[CompiledFlow, dict[str, Any]] = weakref.WeakKeyDictionary()


def fingerprint(compiled: CompiledFlow) -> dict[str, Any]:
    """The shape of a compiled flow: its nodes, their slots (type, policy) and events (type).

    The result is cached per compiled graph and must not be mutated.
    """
    fp = _FP_CACHE.get(compiled)
    if fp is None:
        nodes: dict[str, Any] = {}
        for cn in compiled.nodes:
            nodes[cn.name] = {
                "slots": {s.name: f"{type_name(s.type)} ({s.policy.value})" for s in cn.slot_specs},
                "events": {e.name: type_name(e.type) for e in cn.spec.events},
            }
        fp = {"version": 1, "nodes": nodes}
        _FP_CACHE[compiled] = fp
    return fp


def fingerprint_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a job started on flow shape ``old`` would miss on shape ``new``.

    Returns ``(subject, description)`` pairs, ``subject`` being ``node`` or ``node.port``.
    Nodes and ports that ``new`` adds are compatible and not reported.
    """
    out: list[tuple[str, str]] = []
    old_nodes: Mapping[str, Any] = old.get("nodes", {})
    new_nodes: Mapping[str, Any] = new.get("nodes", {})
    for name, shape in old_nodes.items():
        now = new_nodes.get(name)
        if now is None:
            out.append((name, f"node `{name}` is gone"))
            continue
        for kind in ("slots", "events"):
            word = kind[:-1]
            for port, was in shape.get(kind, {}).items():
                is_ = now.get(kind, {}).get(port)
                if is_ is None:
                    out.append((f"{name}.{port}", f"{word} `{name}.{port}` ({was}) is gone"))
                elif is_ != was:
                    out.append(
                        (f"{name}.{port}", f"{word} `{name}.{port}` was {was}, is now {is_}")
                    )
    return out


def apply_mapping(
    state: JobState, mapping: Mapping[str, str | None], new_fp: Mapping[str, Any]
) -> set[str]:
    """Rename (or drop, for ``None``) nodes and slots in a decoded state, in place.

    Keys and values are ``"node"`` or ``"node.slot"``. Returns the subjects the user
    vouched for (every target, every dropped key), whose differences resume accepts.

    Raises:
        SnapshotError: a target names a node or port the flow does not have.
    """
    nodes: Mapping[str, Any] = new_fp.get("nodes", {})
    accepted: set[str] = set()
    fp_nodes: dict[str, Any] = {
        k: {"slots": dict(v.get("slots", {})), "events": dict(v.get("events", {}))}
        for k, v in state.fingerprint.get("nodes", {}).items()
    }
    for src, dst in mapping.items():
        if dst is None:
            accepted.add(src)
            _drop(state, fp_nodes, src)
            continue
        if ("." in src) != ("." in dst):
            msg = f"Cannot map {src!r} to {dst!r}: map a node to a node and a port to a port"
            raise SnapshotError(msg)
        node, _, port = dst.partition(".")
        shape = nodes.get(node)
        if shape is None or (port and port not in shape["slots"] and port not in shape["events"]):
            known = ", ".join(sorted(nodes)) if not port or shape is None else _ports(shape)
            msg = f"Cannot map {src!r} to {dst!r}: the flow has no such {'port' if port else 'node'} (known: {known})"
            raise SnapshotError(msg)
        accepted.add(dst)
        if port:
            _rename_port(state, fp_nodes, src, dst)
        else:
            _rename_node(state, fp_nodes, src, dst)
    state.fingerprint = {**state.fingerprint, "nodes": fp_nodes}
    return accepted


def _ports(shape: Mapping[str, Any]) -> str:
    return ", ".join([*shape["slots"], *shape["events"]]) or "none"


def _drop(state: JobState, fp_nodes: dict[str, Any], key: str) -> None:
    node, _, port = key.partition(".")
    if port:
        state.buffers = [b for b in state.buffers if (b.node, b.slot) != (node, port)]
        shape = fp_nodes.get(node)
        if shape is not None:
            shape["slots"].pop(port, None)
            shape["events"].pop(port, None)
        return
    state.buffers = [b for b in state.buffers if b.node != node]
    state.pending = [p for p in state.pending if p.node != node]
    state.routine_states.pop(node, None)
    fp_nodes.pop(node, None)


def _rename_node(state: JobState, fp_nodes: dict[str, Any], src: str, dst: str) -> None:
    for b in state.buffers:
        if b.node == src:
            b.node = dst
    for p in state.pending:
        if p.node == src:
            p.node = dst
    if src in state.routine_states:
        state.routine_states[dst] = state.routine_states.pop(src)
    prefix = src + "."
    for key in [k for k in state.outputs if k.startswith(prefix)]:
        state.outputs[dst + "." + key[len(prefix) :]] = state.outputs.pop(key)
    if src in fp_nodes:
        fp_nodes[dst] = fp_nodes.pop(src)


def _rename_port(state: JobState, fp_nodes: dict[str, Any], src: str, dst: str) -> None:
    snode, _, sport = src.partition(".")
    dnode, _, dport = dst.partition(".")
    for b in state.buffers:
        if (b.node, b.slot) == (snode, sport):
            b.node, b.slot = dnode, dport
    shape = fp_nodes.get(snode)
    if shape is None:
        return
    for kind in ("slots", "events"):
        if sport in shape[kind]:
            was = shape[kind].pop(sport)
            fp_nodes.setdefault(dnode, {"slots": {}, "events": {}})[kind][dport] = was


# -- the journal --------------------------------------------------------------------------


class Delta(msgspec.Struct, array_like=True, omit_defaults=True):
    """One committed task: what changed in the job since the previous record."""

    gen: int
    done: int = -1
    new: list[tuple[int, str, list[Any], int]] = msgspec.field(default_factory=list)
    bufs: list[tuple[str, str, int, list[Any], bool]] = msgspec.field(default_factory=list)
    outputs: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    dropped: dict[str, int] = msgspec.field(default_factory=dict)
    history: list[TaskRecord] = msgspec.field(default_factory=list)
    rstates: dict[str, RoutineState] = msgspec.field(default_factory=dict)
    shared_data: dict[str, Any] | None = None
    shared_log: list[Any] = msgspec.field(default_factory=list)


class Checkpoint(msgspec.Struct, kw_only=True):
    """A full snapshot as a store keeps it: the state, plus what the journal needs."""

    gen: int
    policy: str
    seqs: list[int]
    state: JobState


def _enc_hook(obj: Any) -> Any:
    msg = f"Encoding objects of type {type(obj).__qualname__} is unsupported"
    raise TypeError(msg)


_ENC = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


# The typed decoders are built on first use: building one walks its Struct types (~1 ms
# for these two), which a program that never reads a store back need not pay at import.
@functools.cache
def _delta_decoder() -> msgspec.msgpack.Decoder[Delta]:
    return msgspec.msgpack.Decoder(Delta)


@functools.cache
def _checkpoint_decoder() -> msgspec.msgpack.Decoder[Checkpoint]:
    return msgspec.msgpack.Decoder(Checkpoint)


def encode_checkpoint(ckpt: Checkpoint) -> bytes:
    """Encode a checkpoint; a bad payload raises ``SnapshotError`` naming where it is."""
    try:
        return _ENC.encode(ckpt)
    except (TypeError, msgspec.EncodeError) as exc:
        from .job_state import _locate_unencodable

        raise _locate_unencodable(ckpt.state, exc) from exc


def decode_checkpoint(blob: bytes, where: str) -> Checkpoint:
    """Decode a checkpoint written by :func:`encode_checkpoint`.

    Raises:
        SnapshotError: naming ``where`` (the store's file or row) and what is wrong.
    """
    try:
        return _checkpoint_decoder().decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"Cannot read the snapshot in {where} ({len(blob)} bytes): {exc}"
        raise SnapshotError(msg) from exc


def replay(ckpt: Checkpoint, records: list[bytes], where: str) -> JobState:
    """The state a checkpoint and the journal records written after it describe.

    Records of an older generation (left by a crash during compaction) are skipped.

    Raises:
        SnapshotError: a record cannot be decoded (naming ``where`` and the record's index).
    """
    st = ckpt.state
    pending: dict[int, PendingTask] = dict(zip(ckpt.seqs, st.pending, strict=False))
    # A snapshot written by store.save() has no seqs: number its pending tasks here.
    for i, p in enumerate(st.pending[len(ckpt.seqs) :]):
        pending[-2 - i] = p
    bufs: dict[tuple[str, str], SlotBuffer] = {(b.node, b.slot): b for b in st.buffers}
    decoder = _delta_decoder()
    for i, blob in enumerate(records):
        try:
            d = decoder.decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            msg = f"Cannot read journal record {i} of {where}: {exc}"
            raise SnapshotError(msg) from exc
        if d.gen != ckpt.gen:
            continue
        pending.pop(d.done, None)
        for seq, node, args, attempt in d.new:
            pending[seq] = PendingTask(node=node, args=args, attempt=attempt)
        for node, slot, pop, push, fresh in d.bufs:
            b = bufs.get((node, slot))
            if b is None:
                b = bufs[node, slot] = SlotBuffer(node=node, slot=slot, values=[])
            del b.values[:pop]
            b.values.extend(push)
            b.fresh = fresh
        for key, vals in d.outputs.items():
            st.outputs.setdefault(key, []).extend(vals)
        st.outputs_dropped.update(d.dropped)
        st.history.extend(d.history)
        st.routine_states.update(d.rstates)
        if d.shared_data is not None:
            st.shared_data = d.shared_data
        st.shared_log.extend(d.shared_log)
    extra = len(st.history) - st.history_limit
    if extra > 0:
        del st.history[:extra]
        st.history_dropped += extra
    st.pending = [pending[k] for k in sorted(pending, key=_seq_order)]
    st.buffers = [b for b in bufs.values() if b.values]
    st._checkpoint = ckpt.policy  # type: ignore[attr-defined]
    return st


def _seq_order(seq: int) -> tuple[int, int]:
    # Unnumbered tasks (negative keys) were pending before any numbered one.
    return (0, -seq) if seq < 0 else (1, seq)


class Journal:
    """Writes one job's checkpoints to a store, by policy (dispatcher thread only).

    Args:
        run: The live job.
        store: Where checkpoints go.
        policy: ``on_pause`` or ``every_task``.
        compact_every: Records folded into a snapshot once this many accumulate.
    """

    def __init__(
        self, run: JobRun, store: JobStore, policy: str, compact_every: int | None = None
    ) -> None:
        self.run = run
        self.store = store
        self.policy = policy
        self.compact_every = COMPACT_EVERY if compact_every is None else compact_every
        self.job_id = run.state.job_id
        self.gen = 0
        self.count = 0
        self.next_seq = 0
        # A task is known by its args tuple, which a retry reuses: _key() -> seq while
        # the task is pending (``keep`` holds the tuples so their ids stay unique).
        self.seqs: dict[Any, int] = {}
        self.keep: dict[Any, tuple[Any, ...]] = {}
        self.bufs: dict[tuple[str, str], tuple[list[Any], bool]] = {}
        self.out_lens: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.hist_total = 0
        self.shared_data: dict[str, Any] = {}
        self.log_len = 0
        self.held: dict[int, list[tuple[Any, ...]]] = {}
        self.broken = False
        # Exact mode: deliveries are counted, so a record costs O(what changed) rather
        # than O(everything buffered); without it buffers are compared by identity.
        self.lens: dict[tuple[str, str], int] = {}
        self.pushed: dict[tuple[NodeRun, int], int] = {}
        self.dirty: dict[NodeRun, None] = {}
        self.exact = policy == "every_task" and self._count_deliveries()
        run.on_finish = [*run.on_finish, self._finished]

    def _count_deliveries(self) -> bool:
        from .jobrun import JobRun

        run = self.run
        real = JobRun.deliver
        pushed = self.pushed
        dirty = self.dirty

        def deliver(nr: NodeRun, si: int, value: Any) -> None:
            dirty[nr] = None
            q0 = nr.q0
            if q0 is not None:
                # A single-queue node either runs the value at once or queues it.
                before = len(q0)
                real(run, nr, si, value)
                if len(q0) > before:
                    pushed[nr, 0] = pushed.get((nr, 0), 0) + 1
                return
            real(run, nr, si, value)
            pushed[nr, si] = pushed.get((nr, si), 0) + 1

        try:
            run.deliver = deliver  # type: ignore[method-assign]
        except AttributeError:  # a JobRun without __dict__: fall back to comparing
            return False
        return True

    # -- hooks called by the dispatcher ---------------------------------------------

    def started(self) -> None:
        """The job has taken its inputs (or restored its pending work): write the base snapshot."""
        if self.policy == "every_task" and not self.run.finished:
            self.compact()

    def hold(self, msg: tuple[Any, ...]) -> None:
        """Keep a pool worker's emit until its task ends (``msg`` as the dispatcher got it)."""
        self.held.setdefault(msg[5], []).append(msg)

    def release_held(self, token: int) -> None:
        """Apply the held emits of the task ``token`` (its end is being handled)."""
        msgs = self.held.pop(token, None)
        if not msgs:
            return
        disp = self.run.dispatcher
        for msg in msgs:
            nr = msg[1]
            try:
                nr._emit_inline(msg[2], msg[3])
            except Exception as exc:
                disp._emit_failed(nr, exc)

    def task_end(self, task: Task, failed: bool = False) -> None:
        """Commit the effects of a task that has ended (and been released)."""
        if self.policy != "every_task" or self.broken or self.run.finished:
            return
        if failed or self.count >= self.compact_every:
            self.compact()
            return
        try:
            self.store._append(self.job_id, self._delta(task))
        except Exception as exc:
            self._fail(exc)
            return
        self.count += 1

    # -- internals ---------------------------------------------------------------------

    def _finished(self, run: JobRun) -> None:
        self.held.clear()  # emits of tasks abandoned after a timeout
        # every_task writes every end; on_pause writes pauses and finishes (the last word).
        self.compact(final=True)

    def _all_tasks(self, waiting: bool = False) -> list[Task]:
        run = self.run
        if waiting:
            held: dict[Any, Task] = getattr(run, "waiting", {})
            return [*run.running.values(), *held.values(), *run.tasks]
        return [*run.running.values(), *run.tasks]

    @staticmethod
    def _key(nr: NodeRun, args: tuple[Any, ...]) -> Any:
        # A source node's activation has the shared empty tuple as args: key it by node.
        return id(args) if args else ("source", id(nr))

    def _seq_for(self, nr: NodeRun, args: tuple[Any, ...]) -> int:
        key = self._key(nr, args)
        seq = self.seqs.get(key)
        if seq is None:
            seq = self.seqs[key] = self.next_seq
            self.keep[key] = args
            self.next_seq += 1
        return seq

    def compact(self, final: bool = False) -> None:
        """Write a full snapshot and start a new journal generation."""
        if self.broken:
            return
        run = self.run
        st = run.state
        if final or run.finished:
            snap = msgspec.structs.replace(st)
            seqs: list[int] = []
        else:
            snap = run._snapshot_now()
            # Our own pending list, numbered: stopped work, then running, retry-waiting
            # and queued activations (a task waiting out a retry delay must survive too).
            tasks = self._all_tasks(waiting=True)
            snap.pending = [*st.pending] + [
                PendingTask(node=nr.name, args=list(args), attempt=attempt)
                for nr, args, attempt in tasks
            ]
            seqs = [self._fresh_seq() for _ in st.pending]
            seqs.extend(self._seq_for(t[0], t[1]) for t in tasks)
        self.gen = self.store.next_gen()
        self.count = 0
        policy = self.policy
        ckpt = Checkpoint(gen=self.gen, policy=policy, seqs=seqs, state=snap)
        try:
            self.store._put(ckpt)
        except Exception as exc:
            self._fail(exc)
            return
        self._mirror(snap)

    def _fresh_seq(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def _mirror(self, snap: JobState) -> None:
        if self.exact:
            self.lens = {(b.node, b.slot): len(b.values) for b in snap.buffers}
            self.dirty.clear()
            self.pushed.clear()
        else:
            self.bufs = {(b.node, b.slot): (list(b.values), b.fresh) for b in snap.buffers}
        self.out_lens = {k: len(v) for k, v in snap.outputs.items()}
        self.dropped = dict(snap.outputs_dropped)
        st = self.run.state
        self.hist_total = st.history_dropped + len(st.history)
        self.shared_data = dict(st.shared_data)
        self.log_len = len(st.shared_log)

    def _fail(self, exc: Exception) -> None:
        # The job cannot be made durable any more: fail it rather than run on unrecorded.
        self.broken = True
        run = self.run
        disp = run.dispatcher
        record = disp._record_error(run, None, exc, 1)
        if not run.finished:
            disp._stop(run, record)

    def _delta(self, task: Task) -> bytes:
        run = self.run
        st = run.state
        d = Delta(gen=self.gen)
        key = self._key(task[0], task[1])
        done = self.seqs.pop(key, None)
        self.keep.pop(key, None)
        if done is not None:
            d.done = done
        dirty = self.dirty
        dirty[task[0]] = None
        for nr, args, attempt in self._all_tasks():
            if self._key(nr, args) not in self.seqs:
                d.new.append((self._seq_for(nr, args), nr.name, list(args), attempt))
                dirty[nr] = None  # forming it may have taken values from its buffers
        if self.exact:
            self._counted_buffer_deltas(d)
        else:
            self._buffer_deltas(d)
        for k, outs in st.outputs.items():
            n = self.out_lens.get(k, 0)
            if len(outs) != n:
                d.outputs[k] = outs[n:]
                self.out_lens[k] = len(outs)
        if st.outputs_dropped != self.dropped:
            d.dropped = dict(st.outputs_dropped)
            self.dropped = dict(st.outputs_dropped)
        total = st.history_dropped + len(st.history)
        new = total - self.hist_total
        if new > 0:
            d.history = st.history[-new:]
            self.hist_total = total
        nr = task[0]
        d.rstates[nr.name] = nr.rs
        if st.shared_data != self.shared_data:
            d.shared_data = st.shared_data
            self.shared_data = dict(st.shared_data)
        if len(st.shared_log) > self.log_len:
            d.shared_log = st.shared_log[self.log_len :]
            self.log_len = len(st.shared_log)
        try:
            return _ENC.encode(d)
        except (TypeError, msgspec.EncodeError) as exc:
            raise self._locate(d, exc) from exc

    def _counted_buffer_deltas(self, d: Delta) -> None:
        # Buffers grow at the tail (deliver, counted) and shrink at the head (forming an
        # activation, which marks the node dirty): pops = written + pushed - now.
        lens = self.lens
        pushed = self.pushed
        for nr in self.dirty:
            for si, (spec, pol) in enumerate(zip(nr.cn.slot_specs, nr.cn.policies, strict=True)):
                buf = nr.bufs[si]
                k = (nr.name, spec.name)
                n_old = lens.get(k, 0)
                if pol is Policy.QUEUE or pol is Policy.APPEND:
                    p = pushed.get((nr, si), 0)
                    n_new = len(buf)
                    q = n_old + p - n_new
                    if q > n_old:  # some pushed values were taken already
                        pop, push = n_old, list(buf)
                    elif not p:
                        pop, push = q, []
                    elif isinstance(buf, list):
                        pop, push = q, buf[n_new - p :]
                    else:
                        pop, push = q, [buf[i] for i in range(n_new - p, n_new)]
                    if pop or push:
                        d.bufs.append((nr.name, spec.name, pop, push, False))
                        lens[k] = n_new
                    continue
                if pol is Policy.MERGE:
                    values = [buf.value, *buf] if buf.has else []
                    fresh = False
                else:
                    values = [buf.value] if buf.has else []
                    fresh = buf.fresh
                if n_old or values:
                    d.bufs.append((nr.name, spec.name, n_old, values, fresh))
                    lens[k] = len(values)
        self.dirty.clear()
        pushed.clear()

    def _buffer_deltas(self, d: Delta) -> None:
        from .jobrun import JobRun

        seen: set[tuple[str, str]] = set()
        for b in JobRun._buffer_list(self.run):
            k = (b.node, b.slot)
            seen.add(k)
            old, fresh = self.bufs.get(k, ((), False))
            pop, push = _diff(old, b.values)
            if pop or push or fresh != b.fresh:
                d.bufs.append((b.node, b.slot, pop, push, b.fresh))
                self.bufs[k] = (b.values, b.fresh)
        for k in [k for k in self.bufs if k not in seen]:
            old, _ = self.bufs.pop(k)
            if old:
                d.bufs.append((k[0], k[1], len(old), [], False))

    def _locate(self, d: Delta, exc: BaseException) -> SnapshotError:
        from .job_state import unencodable_error

        places: list[tuple[str, Any]] = []
        places.extend((f"node `{n}`, pending activation", a) for _, n, a, _ in d.new)
        places.extend((f"node `{n}`, slot `{s}`", v) for n, s, _, v, _ in d.bufs)
        places.extend((f"output `{k}`", v) for k, v in d.outputs.items())
        places.extend((f"node `{n}`, routine state", rs.state) for n, rs in d.rstates.items())
        places.append(("shared data", d.shared_data))
        places.append(("shared log", d.shared_log))
        return unencodable_error(f"journal job {self.job_id}", places, exc)


def _diff(old: Any, new: list[Any]) -> tuple[int, list[Any]]:
    """``(pop, push)`` turning ``old`` into ``new``: pop from the head, push at the tail.

    Buffers only grow at the tail and shrink at the head, so the smallest ``pop`` whose
    remainder is an identity-prefix of ``new`` is found in a few tries; popping
    everything is always correct and is the fallback.
    """
    n_old = len(old)
    if not new:
        return n_old, []
    if n_old == 0:
        return 0, new
    first = new[0]
    tries = 0
    for q in range(n_old):
        if old[q] is not first:
            continue
        keep = n_old - q
        if keep <= len(new) and all(map(operator.is_, old[q:], new[:keep])):
            return q, new[keep:]
        tries += 1
        if tries >= 4:
            break
    return n_old, new


def now() -> float:
    """Wall-clock seconds, the time base stores use for ``older_than``."""
    return time.time()


# -- wiring into Flow.start/run/resume -------------------------------------------------------


def flow_fingerprint(compiled: CompiledFlow) -> dict[str, Any]:
    """:func:`fingerprint`, memoised on the compiled graph (a job start pays one getattr)."""
    fp: dict[str, Any] | None = getattr(compiled, "_routilux_fp", None)
    if fp is None:
        fp = fingerprint(compiled)
        setattr(compiled, "_routilux_fp", fp)  # noqa: B010 - CompiledFlow is not ours
    return fp


def attach(run: JobRun, store: JobStore | None, checkpoint: str | None) -> None:
    """Give ``run`` a journal writing to ``store`` under policy ``checkpoint``.

    ``checkpoint=None`` means ``on_pause`` with a store (or the policy a job loaded from a
    store was running under) and nothing without one.

    Raises:
        ValueError: an unknown policy, or a policy that writes with no store to write to.
    """
    if checkpoint is None:
        if store is None:
            return
        checkpoint = getattr(run.state, "_checkpoint", None) or "on_pause"
    if checkpoint not in POLICIES:
        msg = f"Unknown checkpoint policy {checkpoint!r} (valid: {', '.join(POLICIES)})"
        raise ValueError(msg)
    if store is None:
        if checkpoint == "manual":
            return
        msg = f"checkpoint={checkpoint!r} writes checkpoints: pass store= (e.g. SQLiteStore())"
        raise ValueError(msg)
    run.state._checkpoint = checkpoint  # type: ignore[attr-defined]
    if checkpoint == "manual":
        return
    journal = Journal(run, store, checkpoint)
    if checkpoint == "every_task":
        # Only a journaling job needs the scheduler's per-task hooks (and held emits);
        # on_pause needs just the finish callback the Journal registered.
        run.journal = journal


def check_resume(
    state: JobState, compiled: CompiledFlow, flow_id: str, mapping: Mapping[str, str | None] | None
) -> None:
    """Refuse to resume ``state`` on a flow whose shape lost or retyped what the job used.

    Raises:
        SnapshotError: listing every difference, unless ``mapping`` accounts for it.
    """
    new = flow_fingerprint(compiled)
    accepted: set[str] = set()
    if mapping:
        accepted = apply_mapping(state, mapping, new)
    if not state.fingerprint:
        return  # written before fingerprints existed: restore() still checks each value
    diffs = [
        text
        for subject, text in fingerprint_diff(state.fingerprint, new)
        if subject not in accepted and subject.partition(".")[0] not in accepted
    ]
    if diffs:
        msg = (
            f"Cannot resume job {state.job_id} on flow {flow_id!r}: the flow differs from the "
            "one the job was started on:\n"
            + "\n".join(f"- {d}" for d in diffs)
            + "\nPass mapping={old: new} to resume anyway ('node' or 'node.port' to its new "
            "name, to itself to accept a new type, or to None to drop its state)"
        )
        raise SnapshotError(msg)
    state.fingerprint = new
