"""Error strategies on both doors: Stop, Continue, Skip, Retry, timeouts, and what gets recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from routilux import (
    Continue,
    ErrorHandler,
    ErrorStrategy,
    Flow,
    JobState,
    JobStatus,
    Retry,
    Routine,
    Skip,
    Stop,
    routine,
)

# -- the typed door ---------------------------------------------------------------------------


@routine
def numbers(n: int) -> Iterator[int]:
    yield from range(n)


def fragile_flow(
    workers: int, policy: Any = None, flow_policy: Any = None
) -> tuple[Flow, Any, Any]:
    """numbers(3) >> fragile, where fragile fails on 1."""

    @routine(on_error=policy)
    def fragile(x: int) -> int:
        if x == 1:
            msg = f"bad {x}"
            raise ValueError(msg)
        return x * 10

    with Flow("errors", max_workers=workers, on_error=flow_policy) as flow:
        src, node = numbers(), fragile()
        src.result >> node.x
    return flow, src, node


def test_stop_is_the_default_and_records_the_failure(workers: int) -> None:
    flow, src, node = fragile_flow(workers)
    state = flow.run(src.n(3), timeout=10)
    assert state.status is JobStatus.FAILED
    err = state.error
    assert err is not None
    assert (err.node, err.type, err.message, err.attempt) == ("fragile", "ValueError", "bad 1", 1)
    assert "raise ValueError(msg)" in err.traceback
    assert err.traceback.rstrip().endswith("ValueError: bad 1")
    assert state.errors == [err]
    rs = state.routine_states["fragile"]
    assert rs.last_error == err
    assert rs.status == "failed"
    assert node.stats(state).errors == 1
    # The failed activation is kept, so a resume runs it again.
    assert [(p.node, p.args) for p in state.pending if p.node == "fragile"][:1] == [
        ("fragile", [1])
    ]


@pytest.mark.parametrize(
    ("policy", "status"),
    [(Continue(), "error_continued"), (Skip(), "skipped")],
    ids=["continue", "skip"],
)
def test_continue_and_skip_record_the_error_and_go_on(
    workers: int, policy: Any, status: str
) -> None:
    flow, src, node = fragile_flow(workers, policy)
    state = flow.run(src.n(3), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert sorted(state.output("fragile.result")) == [0, 20]
    assert [(e.node, e.type, e.message) for e in state.errors] == [
        ("fragile", "ValueError", "bad 1")
    ]
    assert state.routine_states["fragile"].status == status
    stats = node.stats(state)
    assert (stats.activations, stats.errors) == (3, 1)


def test_the_flow_default_applies_and_a_routine_policy_wins(workers: int) -> None:
    flow, src, _ = fragile_flow(workers, flow_policy=Continue())
    assert flow.run(src.n(3), timeout=10).status is JobStatus.COMPLETED
    flow, src, _ = fragile_flow(workers, policy=Stop(), flow_policy=Continue())
    assert flow.run(src.n(3), timeout=10).status is JobStatus.FAILED


def test_retry_with_backoff_succeeds_after_transient_failures(workers: int) -> None:
    starts: list[float] = []

    @routine(on_error=Retry(max_attempts=3, delay=0.01, backoff=2.0, on=(IOError,)))
    def flaky(x: int) -> int:
        starts.append(time.perf_counter())
        if len(starts) < 3:
            msg = f"transient {len(starts)}"
            raise OSError(msg)
        return x

    with Flow("retry", max_workers=workers) as flow:
        node = flaky()
    state = flow.run(node.x(5), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert state.output("flaky.result") == [5]
    assert [(e.type, e.message, e.attempt) for e in state.errors] == [
        ("OSError", "transient 1", 1),
        ("OSError", "transient 2", 2),
    ]
    stats = node.stats(state)
    assert (stats.activations, stats.errors, stats.retries) == (3, 2, 2)
    # The delays grow by the backoff: 0.01 s, then 0.02 s.
    assert starts[1] - starts[0] >= 0.01
    assert starts[2] - starts[1] >= 0.02


def test_retry_only_retries_the_listed_exceptions(workers: int) -> None:
    calls: list[int] = []

    @routine(on_error=Retry(max_attempts=3, on=(OSError,)))
    def picky(x: int) -> int:
        calls.append(x)
        raise KeyError(x)

    with Flow("retry", max_workers=workers) as flow:
        node = picky()
    state = flow.run(node.x(1), timeout=10)
    assert state.status is JobStatus.FAILED
    assert calls == [1]
    assert state.routine_states["picky"].retries == 0


def test_retry_gives_up_after_max_attempts_then_applies_then(workers: int) -> None:
    @routine(on_error=Retry(max_attempts=3))
    def always(x: int) -> int:
        raise RuntimeError("nope")

    @routine(on_error=Retry(max_attempts=2, then=Continue()))
    def tolerated(x: int) -> int:
        raise RuntimeError("nope")

    with Flow("retry", max_workers=workers) as flow:
        a = always()
    state = flow.run(a.x(1), timeout=10)
    assert state.status is JobStatus.FAILED
    assert [e.attempt for e in state.errors] == [1, 2, 3]
    assert state.error is not None
    assert state.error.attempt == 3

    with Flow("retry", max_workers=workers) as flow:
        t = tolerated()
    state = flow.run(t.x(1), timeout=10)
    assert state.status is JobStatus.COMPLETED
    assert [e.attempt for e in state.errors] == [1, 2]
    assert state.routine_states["tolerated"].status == "error_continued"


def test_a_retry_delay_blocks_neither_other_jobs_nor_other_nodes(workers: int) -> None:
    failed_once = threading.Event()
    other_ran = threading.Event()

    @routine(on_error=Retry(max_attempts=2, delay=30.0))
    def slow_retry(x: int) -> int:
        if x == 0:
            failed_once.set()
            raise OSError("try again in 30 s")
        return x

    @routine
    def other(x: int) -> int:
        assert failed_once.wait(10)  # runs while slow_retry waits for its retry
        other_ran.set()
        return x

    @routine
    def fan(n: int) -> Iterator[int]:
        yield n

    with Flow("retry", max_workers=workers) as flow:
        src, a, b = fan(), slow_retry(), other()
        src.result >> a.x
        src.result >> b.x
    job = flow.start(src.n(0))
    # Another node of the same job runs during the retry delay…
    assert other_ran.wait(10)
    # …and so does a whole other job of the same flow.
    second = flow.run(src.n(7), timeout=10)
    assert second.status is JobStatus.COMPLETED
    assert second.output("slow_retry.result") == [7]
    assert job.status is JobStatus.RUNNING
    assert job.state.routine_states["slow_retry"].retries == 1
    # Cancelling does not wait for the 30 s timer.
    t0 = time.perf_counter()
    assert job.cancel(timeout=5).status is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 5


def test_a_routine_timeout_abandons_the_activation_and_records_it(workers: int) -> None:
    release = threading.Event()
    calls: list[int] = []

    @routine(timeout=0.05)
    def hang(x: int) -> int:
        release.wait(10)
        return x

    @routine(timeout=0.05, on_error=Retry(max_attempts=2, on=(TimeoutError,)))
    def hang_once(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            release.wait(10)
        return x

    try:
        with Flow("timeouts", max_workers=workers) as flow:
            node = hang()
        state = flow.run(node.x(1), timeout=10)
        assert state.status is JobStatus.FAILED
        assert state.error is not None
        assert (state.error.node, state.error.type, state.error.message) == (
            "hang",
            "TimeoutError",
            "Routine `hang` activation ran past its timeout of 0.05 s (abandoned)",
        )
        with Flow("timeouts", max_workers=workers) as flow:
            node = hang_once()
        state = flow.run(node.x(2), timeout=10)
        assert state.status is JobStatus.COMPLETED
        assert state.output("hang_once.result") == [2]
        assert [e.type for e in state.errors] == ["TimeoutError"]
    finally:
        release.set()


# -- the classic door -------------------------------------------------------------------------


class Emit3(Routine):
    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out", ["n"])

    def go(self, **kw: Any) -> None:
        for n in range(3):
            self.emit("out", n=n)


class Fragile(Routine):
    """Fails on n == 1 for the first ``failures`` attempts (counted per job in shared data)."""

    def __init__(self, failures: int = 10**9, exc: type[Exception] = ValueError) -> None:
        super().__init__()
        self.failures = failures
        self.exc = exc
        self.define_slot("input", handler=self.handle)
        self.define_event("out", ["n"])

    def handle(self, n: int) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        if n == 1:
            tries = ctx.job_state.get_shared_data("tries", 0) + 1
            ctx.job_state.update_shared_data("tries", tries)
            if tries <= self.failures:
                msg = f"bad {n} (try {tries})"
                raise self.exc(msg)
        self.emit("out", n=n * 10)


def classic_flow(workers: int, fragile: Fragile) -> Flow:
    flow = Flow("classic") if workers == 1 else Flow("classic", "concurrent", workers)
    flow.add_routine(Emit3(), "src")
    flow.add_routine(fragile, "fragile")
    sink = Routine()
    sink.define_slot("input")
    flow.add_routine(sink, "sink")
    flow.connect("src", "out", "fragile", "input")
    flow.connect("fragile", "out", "sink", "input")
    return flow


def run_classic(flow: Flow) -> JobState:
    state = flow.execute("src")
    assert JobState.wait_for_completion(flow, state, timeout=10)
    return state


def delivered(state: JobState) -> list[int]:
    return sorted(
        r.data["n"] for r in state.get_execution_history("fragile") if r.event_name == "out"
    )


CLASSIC = [
    # (how the routine is set up, job status, fragile's status, values that got through)
    ("default stop", lambda r: None, "failed", "failed", None),
    (
        "stop",
        lambda r: r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.STOP)),
        "failed",
        "failed",
        None,
    ),
    (
        "continue",
        lambda r: r.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE)),
        "completed",
        "error_continued",
        [0, 20],
    ),
    (
        "skip",
        lambda r: r.set_error_handler(ErrorHandler(strategy="skip")),
        "completed",
        "skipped",
        [0, 20],
    ),
    ("optional", lambda r: r.set_as_optional(), "completed", "error_continued", [0, 20]),
    (
        "optional skip",
        lambda r: r.set_as_optional(ErrorStrategy.SKIP),
        "completed",
        "skipped",
        [0, 20],
    ),
]


@pytest.mark.parametrize(
    ("setup", "job_status", "routine_status", "through"),
    [c[1:] for c in CLASSIC],
    ids=[c[0] for c in CLASSIC],
)
def test_classic_strategies(
    workers: int, setup: Any, job_status: str, routine_status: str, through: list[int] | None
) -> None:
    fragile = Fragile()
    setup(fragile)
    state = run_classic(classic_flow(workers, fragile))
    assert state.status == job_status
    assert state.get_routine_state("fragile") == {
        "status": routine_status,
        "error": "bad 1 (try 1)",
    }
    assert [(e.node, e.type, e.message) for e in state.errors] == [
        ("fragile", "ValueError", "bad 1 (try 1)")
    ]
    assert "in handle" in state.errors[0].traceback
    assert fragile.stats(state).errors == 1
    if through is not None:
        assert delivered(state) == through


def test_classic_retry_handler(workers: int) -> None:
    fragile = Fragile(failures=2, exc=OSError)
    handler = ErrorHandler(
        strategy=ErrorStrategy.RETRY,
        max_retries=2,
        retry_delay=0.01,
        backoff_multiplier=2.0,
        retryable_exceptions=(OSError,),
    )
    fragile.set_error_handler(handler)
    flow = classic_flow(workers, fragile)
    state = run_classic(flow)
    assert state.status == "completed"
    assert delivered(state) == [0, 10, 20]
    assert [e.attempt for e in state.errors] == [1, 2]
    assert fragile.stats(state).retries == 2
    assert flow.get_routine_retry_count("fragile") == 2


def test_classic_retry_stops_on_exceptions_it_does_not_retry(workers: int) -> None:
    fragile = Fragile(failures=1, exc=ValueError)
    fragile.set_error_handler(
        ErrorHandler(
            strategy="retry", max_retries=3, retry_delay=0.0, retryable_exceptions=(OSError,)
        )
    )
    state = run_classic(classic_flow(workers, fragile))
    assert state.status == "failed"
    assert [e.attempt for e in state.errors] == [1]


def test_a_critical_routine_fails_the_job_when_retries_run_out(workers: int) -> None:
    fragile = Fragile()
    fragile.set_as_critical(max_retries=2, retry_delay=0.01, retry_backoff=1.0)
    handler = fragile.get_error_handler()
    assert (handler.strategy, handler.is_critical, handler.retry_backoff) == (
        ErrorStrategy.RETRY,
        True,
        1.0,
    )
    flow = classic_flow(workers, fragile)
    flow.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))  # the routine's wins
    state = run_classic(flow)
    assert state.status == "failed"
    assert [e.attempt for e in state.errors] == [1, 2, 3]
    assert state.get_routine_state("fragile") == {"status": "failed", "error": "bad 1 (try 3)"}


def test_a_critical_routine_that_recovers_lets_the_job_complete(workers: int) -> None:
    fragile = Fragile(failures=1)
    fragile.set_as_critical(max_retries=2, retry_delay=0.0)
    state = run_classic(classic_flow(workers, fragile))
    assert state.status == "completed"
    assert delivered(state) == [0, 10, 20]


def test_classic_timeout_from_config(workers: int) -> None:
    release = threading.Event()

    class Hangs(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=lambda **kw: release.wait(10))

    hangs = Hangs()
    hangs.set_timeout(0.05)
    assert hangs.get_config("timeout") == 0.05
    flow = Flow("t") if workers == 1 else Flow("t", "concurrent", workers)
    flow.add_routine(hangs, "hangs")
    try:
        state = run_classic_entry(flow, "hangs")
        assert state.status == "failed"
        assert state.error is not None
        assert state.error.type == "TimeoutError"
        assert state.routine_states["hangs"].last_error == state.error
    finally:
        release.set()


def run_classic_entry(flow: Flow, entry: str) -> JobState:
    state = flow.execute(entry)
    assert JobState.wait_for_completion(flow, state, timeout=10)
    return state


def test_error_handlers_must_be_policies() -> None:
    r = Routine()
    with pytest.raises(
        TypeError,
        match=r"^Routine `0x[0-9a-f]+`: an error handler needs decide\(exc, attempt\); got str \(use ErrorHandler, Stop, Continue, Skip or Retry\)$",
    ):
        r.set_error_handler("continue")
    with pytest.raises(
        TypeError,
        match=r"^Flow 'f': an error handler needs decide\(exc, attempt\); got int \(use ErrorHandler, Stop, Continue, Skip or Retry\)$",
    ):
        Flow("f").set_error_handler(3)
    with pytest.raises(
        ValueError,
        match=r"^set_as_optional takes CONTINUE or SKIP, got <ErrorStrategy.RETRY: 'retry'>$",
    ):
        r.set_as_optional(ErrorStrategy.RETRY)
    with pytest.raises(ValueError, match=r"^set_as_optional takes CONTINUE or SKIP, got 'ignore'$"):
        r.set_as_optional("ignore")
    with pytest.raises(
        ValueError,
        match=r"^Unknown error strategy 'ignore' \(valid: stop, continue, retry, skip\)$",
    ):
        ErrorHandler(strategy="ignore")


def test_error_handler_accepts_the_0_10_retry_backoff_name() -> None:
    handler = ErrorHandler("retry", 2, 0.5, retry_backoff=4.0)
    assert handler.retry_backoff == 4.0
    assert handler.decide(OSError("x"), 2).delay == pytest.approx(2.0)


def test_flow_wide_stats_sum_errors_and_retries_over_jobs(workers: int) -> None:
    flow, src, node = fragile_flow(workers, policy=Retry(max_attempts=2, then=Continue()))
    for _ in range(3):
        state = flow.run(src.n(3), timeout=10)
        assert state.status is JobStatus.COMPLETED
        # x == 1 fails twice (one retry), the others pass: 4 runs, 2 errors, 1 retry.
        rs = state.routine_states["fragile"]
        assert (rs.activations, rs.errors, rs.retries) == (4, 2, 1)
    total = node.stats()
    assert (total.activations, total.errors, total.retries, total.jobs) == (12, 6, 3, 3)
