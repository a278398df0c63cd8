"""W4 snapshot: ``to_bytes`` + ``from_bytes`` of a paused W1 job, and of a state
with a 22,000-record history.

The paused job is W1 with ``hop4`` replaced by a gate that, on value 1,000, pauses
its own job with ``flow.pause(state, timeout=0)`` (the pause takes effect when the
running activation returns, so the bounded wait times out at once, by design).
Its snapshot carries the buffered values and pending activations. The bench then
resumes the *decoded* snapshot and checks that the sink receives every value exactly
once, in order. The 22,000-record state is a completed W1 job on
``Flow(history_limit=22000)`` (22,001 handler runs: 22,000 kept, 1 dropped).

Figure: the median of ``to_bytes`` + ``from_bytes`` pairs; the snapshot size is in
the notes. Floor, same process: ``msgspec.msgpack`` encode + decode of the same
snapshot as plain builtins (``msgspec.to_builtins``), no types.
"""

from __future__ import annotations

import contextlib
import threading
from time import perf_counter
from typing import Any

import msgspec

from routilux import Flow, JobState, JobTimeoutError, Node, routine

from . import w1_stream
from ._common import Config, Report, Row, check, median

PAUSE_AT = w1_stream.N // 2
HISTORY = 22_000
TARGET_MS = {"paused": 1.0, "history": 20.0}

_job: list[tuple[Flow, JobState]] = []
_job_known = threading.Event()


@routine
def gate(x: int) -> int:
    if x == PAUSE_AT:
        _job_known.wait(60)  # the caller publishes the job right after start()
        flow, state = _job[0]
        with contextlib.suppress(JobTimeoutError):
            flow.pause(state, timeout=0)
    return x


def build_gated() -> tuple[Flow, Node[Any, Any]]:
    """W1 with ``hop4`` replaced by :func:`gate`; returns the flow and the source."""
    with Flow("w4-paused", max_workers=1) as flow:
        src = w1_stream.source(name="source")
        prev: Any = src.result
        for i in range(w1_stream.HOPS):
            h = gate(name="hop4") if i == 4 else w1_stream.hop(name=f"hop{i}")
            prev >> h.x
            prev = h.result
        k = w1_stream.sink(name="sink")
        prev >> k.x
    return flow, src


def paused_state(flow: Flow, src: Node[Any, Any]) -> JobState:
    """Run the gated W1 job until it pauses itself; check what the pause kept."""
    w1_stream.received.clear()
    _job.clear()
    _job_known.clear()
    job = flow.start(src.n(w1_stream.N))
    _job.append((flow, job.state))
    _job_known.set()
    state = job.wait(300)
    check(state.status == "paused", f"W4: the gated job is {state.status}, expected paused")
    kept = len(state.pending) + sum(len(b.values) for b in state.buffers)
    check(kept > 0, "W4: the paused job kept no pending work or buffered values")
    return state


def roundtrip(state: JobState, reps: int) -> tuple[list[float], bytes]:
    """Seconds per ``to_bytes`` + ``from_bytes`` pair, and the bytes (checked to round-trip)."""
    out: list[float] = []
    blob = b""
    for _ in range(reps):
        t0 = perf_counter()
        blob = state.to_bytes()
        back = JobState.from_bytes(blob)
        out.append(perf_counter() - t0)
    check(
        back.to_bytes() == blob, "W4: from_bytes(to_bytes(s)).to_bytes() differs from to_bytes(s)"
    )
    return out, blob


def floor_builtins(state: JobState, reps: int) -> list[float]:
    """Seconds per msgpack encode + decode of the state as plain builtins."""
    data = msgspec.to_builtins(state.snapshot())
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder()
    out: list[float] = []
    for _ in range(reps):
        t0 = perf_counter()
        dec.decode(enc.encode(data))
        out.append(perf_counter() - t0)
    return out


def check_resume(flow: Flow, blob: bytes) -> None:
    """Resume the decoded snapshot; the sink must end with every value exactly once, in order."""
    restored = JobState.from_bytes(blob)
    before = len(w1_stream.received)
    live = flow.resume(restored)
    state = flow.wait(live, 300)
    check(state.status == "completed", f"W4: the resumed job ended {state.status}")
    got = w1_stream.received
    check(
        got == list(range(w1_stream.N)),
        f"W4: after resume the sink has {len(got)} values ({before} before the pause), "
        f"expected 0..{w1_stream.N - 1} once each, in order",
    )


def history_state() -> JobState:
    """A completed W1 job whose history holds 22,000 task records."""
    flow, src = w1_stream.build(1, name="w4-history", history_limit=HISTORY)
    try:
        state = w1_stream.run_once(flow, src)
    finally:
        flow.shutdown()
    check(
        len(state.history) == HISTORY,
        f"W4: the history holds {len(state.history)} records, expected {HISTORY}",
    )
    dropped = w1_stream.HANDLERS - HISTORY
    check(
        state.history_dropped == dropped,
        f"W4: history_dropped is {state.history_dropped}, expected {dropped}",
    )
    return state


def run(cfg: Config, report: Report) -> None:
    """Measure both snapshots with their floors; resume the paused one to check it."""
    flow, src = build_gated()
    try:
        paused = paused_state(flow, src)
        reps = 50 if cfg.quick else 300
        secs, blob = roundtrip(paused, reps)
        floor = median(floor_builtins(paused, reps)) * 1e3
        check_resume(flow, blob)
    finally:
        flow.shutdown()
    kept = len(paused.pending) + sum(len(b.values) for b in paused.buffers)
    report.rows.append(
        Row(
            "W4",
            "snapshot of paused W1, to_bytes+from_bytes",
            median(secs) * 1e3,
            "ms",
            floor=floor,
            floor_what="msgpack of builtins",
            target=TARGET_MS["paused"],
            note=f"{len(blob):,} B; {kept} values/tasks kept; {len(paused.history)} history records",
        )
    )
    hist = history_state()
    reps = 5 if cfg.quick else 20
    secs, blob = roundtrip(hist, reps)
    floor = median(floor_builtins(hist, reps)) * 1e3
    report.rows.append(
        Row(
            "W4",
            f"snapshot with {HISTORY:,} history records",
            median(secs) * 1e3,
            "ms",
            floor=floor,
            floor_what="msgpack of builtins",
            target=TARGET_MS["history"],
            note=f"{len(blob):,} B ({len(blob) / HISTORY:.1f} B/record)",
        )
    )
