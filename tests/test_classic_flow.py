"""The classic Flow API (routilux 0.10): add_routine, connect, execute, merge, mapping, control."""

from __future__ import annotations

import itertools
import json
import runpy
import threading
from collections import Counter
from pathlib import Path
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
    StateError,
)


def make_flow(workers: int, flow_id: str = "classic") -> Flow:
    if workers == 1:
        return Flow(flow_id)  # 0.10's default: sequential
    return Flow(flow_id, execution_strategy="concurrent", max_workers=workers)


def wait(flow: Flow, state: JobState) -> JobState:
    assert JobState.wait_for_completion(flow, state, timeout=10)
    return state


# Module-level routines, so serialize/deserialize can import them back.


class Numbers(Routine):
    """Emits ``{"n": i}`` for i in ``range(count)`` (count from the trigger or the config)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("trigger", handler=self.go)
        self.define_event("out", ["n"])

    def go(self, count: int | None = None, **kw: Any) -> None:
        for i in range(count if count is not None else self.get_config("count", 3)):
            self.emit("out", n=i)


class Scale(Routine):
    """``out.n = in.n * factor`` (factor from the config)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.handle)
        self.define_event("out", ["n"])

    def handle(self, n: int) -> None:
        self.emit("out", n=n * self.get_config("factor", 1))


class Collect(Routine):
    """Appends every payload its ``input`` handler gets to the job's shared log."""

    def __init__(self, merge_strategy: Any = "override") -> None:
        super().__init__()
        self.define_slot("input", handler=self.handle, merge_strategy=merge_strategy)

    def handle(self, data: Any) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        ctx.job_state.append_to_shared_log({"got": data})


def got(state: JobState) -> list[Any]:
    return [e["got"] for e in state.get_shared_log() if "got" in e]


def ns(state: JobState) -> list[Any]:
    return [g["n"] for g in got(state)]


def pipeline(workers: int) -> Flow:
    flow = make_flow(workers)
    flow.add_routine(Numbers(), "numbers")
    scale = Scale()
    scale.set_config(factor=10)
    flow.add_routine(scale, "scale")
    flow.add_routine(Collect(), "collect")
    flow.connect("numbers", "out", "scale", "input")
    flow.connect("scale", "out", "collect", "input")
    return flow


# -- building ------------------------------------------------------------------------------


def test_add_routine_returns_the_id_and_defaults_to_the_routine_id() -> None:
    flow = Flow("f")
    r = Routine()
    assert flow.add_routine(r) == r._id
    assert flow.add_routine(Routine(), routine_id="custom") == "custom"
    assert flow.routines["custom"].node_name == "custom"
    assert set(flow.routines) == {r._id, "custom"}


def test_add_routine_rejects_a_taken_id_and_non_routines() -> None:
    flow = Flow("f")
    flow.add_routine(Routine(), "a")
    with pytest.raises(
        ValueError,
        match=r"^Flow 'f' already has a node named `a`; pick another name= \(taken: a\)$",
    ):
        flow.add_routine(Routine(), "a")
    with pytest.raises(
        TypeError,
        match=r"^Flow 'f': add_routine expects a Routine instance, got type \(did you pass the class instead of an instance\?\)$",
    ):
        flow.add_routine(Routine, "b")


def test_connect_names_the_missing_routine_event_or_slot() -> None:
    flow = Flow("f")
    flow.add_routine(Numbers(), "a")
    flow.add_routine(Collect(), "b")
    cases = [
        (
            ("x", "out", "b", "input"),
            r"^Cannot connect `x.out` to `b.input`: flow 'f' has no routine `x` \(routines: a, b\)$",
        ),
        (
            ("a", "nope", "b", "input"),
            r"^Cannot connect `a.nope` to `b.input`: routine `a` has no event `nope` \(events: out\)$",
        ),
        (
            ("a", "out", "y", "input"),
            r"^Cannot connect `a.out` to `y.input`: flow 'f' has no routine `y` \(routines: a, b\)$",
        ),
        (
            ("a", "out", "b", "nope"),
            r"^Cannot connect `a.out` to `b.nope`: routine `b` has no slot `nope` \(slots: input\)$",
        ),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            flow.connect(*args)
    conn = flow.connect("a", "out", "b", "input")
    assert conn in flow.connections
    a, b = flow.routines["a"], flow.routines["b"]
    assert a.get_slot("trigger") is not None
    assert a.get_event("out").connected_slots == [b.get_slot("input")]
    assert b.get_slot("input").connected_events == [a.get_event("out")]


def test_find_routines_by_type_and_get_routine_id() -> None:
    flow = Flow("f")
    n = Numbers()
    flow.add_routine(n, "n")
    flow.add_routine(Collect(), "c")
    assert flow.find_routines_by_type(Numbers) == [("n", n)]
    assert flow._get_routine_id(n) == "n"
    assert flow._get_routine_id(Numbers()) is None


# -- execute ---------------------------------------------------------------------------------


def test_execute_runs_a_pipeline(workers: int) -> None:
    flow = pipeline(workers)
    state = wait(flow, flow.execute("numbers", entry_params={"count": 4}))
    assert state.status == "completed"
    assert state.status == JobStatus.COMPLETED
    assert ns(state) == [0, 10, 20, 30]


def test_execute_needs_a_known_entry_with_a_trigger_slot() -> None:
    flow = pipeline(1)
    with pytest.raises(
        ValueError,
        match=r"^Cannot execute flow 'classic': entry routine `nope` not found \(routines: numbers, scale, collect\)$",
    ):
        flow.execute("nope")
    with pytest.raises(
        ValueError,
        match=r"^Cannot execute flow 'classic': entry routine `scale` has no `trigger` slot \(slots: input\); define one with self.define_slot\('trigger', handler=...\)$",
    ):
        flow.execute("scale")


def test_execute_returns_the_live_state_at_once(workers: int) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Blocking(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)

        def go(self, **kw: Any) -> None:
            entered.set()
            assert release.wait(10)

    flow = make_flow(workers)
    flow.add_routine(Blocking(), "b")
    state = flow.execute("b")
    assert entered.wait(10)
    assert state.status == "running"
    assert not JobState.wait_for_completion(flow, state, timeout=0.01)
    release.set()
    assert JobState.wait_for_completion(flow, state, timeout=10)
    assert state.status == "completed"


def test_execute_can_switch_the_execution_strategy() -> None:
    flow = pipeline(1)
    state = wait(flow, flow.execute("numbers", {"count": 2}, "concurrent"))
    assert flow.execution_strategy == "concurrent"
    assert flow.max_workers == 5
    assert ns(state) == [0, 10]
    with pytest.raises(
        ValueError,
        match=r"^Unknown execution strategy 'parallel' \(valid: sequential, concurrent\)$",
    ):
        flow.set_execution_strategy("parallel")


def test_flow_wait_for_completion_waits_for_every_running_job(workers: int) -> None:
    flow = pipeline(workers)
    states = [flow.execute("numbers", {"count": 3}) for _ in range(3)]
    assert flow.wait_for_completion(timeout=10)
    assert [s.status for s in states] == ["completed"] * 3
    assert flow.wait_for_completion(timeout=10, job_state=states[0])


# -- fan-in with each merge strategy -----------------------------------------------------------


def fan_in(workers: int, merge_strategy: Any) -> JobState:
    """Two sources emit n=0..2 each into one slot of ``Collect``."""
    flow = make_flow(workers)

    class Trigger(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=lambda **kw: self.emit("go"))
            self.define_event("go")

    flow.add_routine(Trigger(), "t")
    for name in ("a", "b"):
        src = Numbers()
        src.set_config(count=3)
        flow.add_routine(src, name)
        flow.connect("t", "go", name, "trigger")
    flow.add_routine(Collect(merge_strategy), "c")
    flow.connect("a", "out", "c", "input")
    flow.connect("b", "out", "c", "input")
    state = wait(flow, flow.execute("t"))
    assert state.status == "completed", state.error
    return state


def test_fan_in_override_runs_the_handler_once_per_delivery_with_that_delivery(
    workers: int,
) -> None:
    calls = got(fan_in(workers, "override"))
    assert Counter(c["n"] for c in calls) == Counter({0: 2, 1: 2, 2: 2})


def test_fan_in_append_gives_the_accumulation_on_every_delivery(workers: int) -> None:
    calls = got(fan_in(workers, "append"))
    # One call per delivery, each seeing one more value than the last.
    assert [len(c["n"]) for c in calls] == [1, 2, 3, 4, 5, 6]
    for earlier, later in itertools.pairwise(calls):
        assert later["n"][: len(earlier["n"])] == earlier["n"]
    assert Counter(calls[-1]["n"]) == Counter({0: 2, 1: 2, 2: 2})


def test_append_keeps_keys_seen_in_earlier_deliveries(workers: int) -> None:
    class TwoKinds(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out")

        def go(self, **kw: Any) -> None:
            self.emit("out", a=1)
            self.emit("out", b=2)
            self.emit("out", a=3)

    flow = make_flow(workers)
    flow.add_routine(TwoKinds(), "src")
    flow.add_routine(Collect("append"), "c")
    flow.connect("src", "out", "c", "input")
    state = wait(flow, flow.execute("src"))
    assert got(state) == [{"a": [1]}, {"a": [1], "b": [2]}, {"a": [1, 3], "b": [2]}]


def test_fan_in_custom_merge_folds_with_the_users_function(workers: int) -> None:
    def running_sum(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        old["total"] = old.get("total", 0) + new["n"]  # updates ``old`` in place, as 0.10 allowed
        old["count"] = old.get("count", 0) + 1
        return old

    calls = got(fan_in(workers, running_sum))
    assert [c["count"] for c in calls] == [1, 2, 3, 4, 5, 6]
    assert calls[-1]["total"] == 2 * (0 + 1 + 2)
    totals = [c["total"] for c in calls]
    assert totals == sorted(totals)


def test_merged_data_is_kept_per_job(workers: int) -> None:
    flow = make_flow(workers)
    flow.add_routine(Numbers(), "n")
    flow.add_routine(Collect("append"), "c")
    flow.connect("n", "out", "c", "input")
    first = wait(flow, flow.execute("n", {"count": 2}))
    second = wait(flow, flow.execute("n", {"count": 1}))
    assert got(first) == [{"n": [0]}, {"n": [0, 1]}]
    assert got(second) == [{"n": [0]}]


# -- param mapping -----------------------------------------------------------------------------


def test_param_mapping_renames_event_keys_to_slot_keys(workers: int) -> None:
    class Emitter(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot(
                "trigger", handler=lambda **kw: self.emit("out", result=7, extra="e", value=0)
            )
            self.define_event("out")

    seen: list[Any] = []

    class Receiver(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=lambda **kw: seen.append(kw))

    flow = make_flow(workers)
    flow.add_routine(Emitter(), "e")
    flow.add_routine(Receiver(), "r")
    flow.connect("e", "out", "r", "input", param_mapping={"result": "value"})
    wait(flow, flow.execute("e"))
    # ``result`` becomes ``value`` (replacing the emitted ``value``); ``extra`` passes through.
    assert seen == [{"extra": "e", "value": 7}]


# -- pause / resume / cancel -------------------------------------------------------------------


class PauseOnFirst(Routine):
    """Pauses its own job from inside the handler the first time (0.10's idiom)."""

    def __init__(self) -> None:
        super().__init__()
        self.define_slot("input", handler=self.handle)
        self.define_event("out", ["n"])

    def handle(self, n: int) -> None:
        ctx = self.get_execution_context()
        assert ctx is not None
        if not ctx.job_state.get_shared_data("paused_once"):
            ctx.job_state.update_shared_data("paused_once", True)
            ctx.flow.pause(ctx.job_state, reason="waiting for input")
        self.emit("out", n=n)


def test_pause_from_a_handler_then_resume_finishes_the_work(workers: int) -> None:
    flow = make_flow(workers)
    flow.add_routine(Numbers(), "n")
    flow.add_routine(PauseOnFirst(), "p")
    flow.add_routine(Collect(), "c")
    flow.connect("n", "out", "p", "input")
    flow.connect("p", "out", "c", "input")
    state = wait(flow, flow.execute("n", {"count": 3}))
    assert state.status == "paused"
    assert {"event": "pause", "reason": "waiting for input"} in state.shared_log
    assert sorted(ns(state)) != [0, 1, 2]  # not everything ran before the pause
    resumed = flow.resume(state)
    wait(flow, resumed)
    assert resumed.status == "completed"
    assert sorted(ns(resumed)) == [0, 1, 2]


def test_pause_and_resume_from_outside_the_job() -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.handle)
            self.define_event("out", ["n"])

        def handle(self, n: int) -> None:
            if n == 0:
                entered.set()
                assert release.wait(10)
            self.emit("out", n=n)

    flow = make_flow(4)
    flow.add_routine(Numbers(), "n")
    flow.add_routine(Slow(), "s")
    flow.add_routine(Collect(), "c")
    flow.connect("n", "out", "s", "input")
    flow.connect("s", "out", "c", "input")
    state = flow.execute("n", {"count": 3})
    assert entered.wait(10)
    paused: list[JobState] = []
    pauser = threading.Thread(target=lambda: paused.append(flow.pause(state, reason="now")))
    pauser.start()
    release.set()  # the running task finishes; queued ones are kept
    pauser.join(10)
    assert paused == [state]
    assert state.status == "paused"
    assert state.pending or state.buffers
    resumed = wait(flow, flow.resume(state))
    assert resumed.status == "completed"
    assert sorted(ns(resumed)) == [0, 1, 2]


def test_cancel_from_a_handler_drops_pending_work(workers: int) -> None:
    class Canceller(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.handle)
            self.define_event("out", ["n"])

        def handle(self, n: int) -> None:
            ctx = self.get_execution_context()
            assert ctx is not None
            ctx.flow.cancel(ctx.job_state, reason="enough")

    flow = make_flow(workers)
    flow.add_routine(Numbers(), "n")
    flow.add_routine(Canceller(), "x")
    flow.add_routine(Collect(), "c")
    flow.connect("n", "out", "x", "input")
    flow.connect("x", "out", "c", "input")
    state = wait(flow, flow.execute("n", {"count": 5}))
    assert state.status == "cancelled"
    assert state.pending == []
    assert got(state) == []
    assert {"event": "cancel", "reason": "enough"} in state.shared_log
    with pytest.raises(StateError, match=r"^Cannot resume job [0-9a-f]+: it is cancelled$"):
        flow.resume(state)


def test_cancel_from_outside_while_a_task_runs() -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("trigger", handler=self.go)
            self.define_event("out", ["n"])

        def go(self, **kw: Any) -> None:
            entered.set()
            assert release.wait(10)
            self.emit("out", n=1)  # dropped: the job is being cancelled

    flow = make_flow(4)
    flow.add_routine(Slow(), "s")
    flow.add_routine(Collect(), "c")
    flow.connect("s", "out", "c", "input")
    state = flow.execute("s")
    assert entered.wait(10)
    done: list[JobState] = []
    t = threading.Thread(target=lambda: done.append(flow.cancel(state, reason="stop")))
    t.start()
    release.set()
    t.join(10)
    assert done == [state]
    assert state.status == "cancelled"
    assert got(state) == []


# -- many jobs at once -------------------------------------------------------------------------


def test_multiple_concurrent_executions_keep_their_own_results(workers: int) -> None:
    flow = pipeline(workers)
    states = {k: flow.execute("numbers", {"count": k}) for k in (1, 2, 3, 4)}
    for k, state in states.items():
        wait(flow, state)
        assert state.status == "completed"
        assert ns(state) == [10 * i for i in range(k)]
    assert len({s.job_id for s in states.values()}) == 4


# -- error handlers at the flow level ------------------------------------------------------------


def test_flow_error_handler_applies_to_classic_handler_errors(workers: int) -> None:
    class Fails(Routine):
        def __init__(self) -> None:
            super().__init__()
            self.define_slot("input", handler=self.handle)
            self.define_event("out", ["n"])

        def handle(self, n: int) -> None:
            if n == 1:
                msg = f"bad {n}"
                raise ValueError(msg)
            self.emit("out", n=n)

    def build() -> Flow:
        flow = make_flow(workers)
        flow.add_routine(Numbers(), "n")
        flow.add_routine(Fails(), "f")
        flow.add_routine(Collect(), "c")
        flow.connect("n", "out", "f", "input")
        flow.connect("f", "out", "c", "input")
        return flow

    # 0.10 swallowed slot handler errors; the default policy now fails the job.
    flow = build()
    state = wait(flow, flow.execute("n", {"count": 3}))
    assert state.status == "failed"
    assert state.error is not None
    assert (state.error.node, state.error.type, state.error.message) == ("f", "ValueError", "bad 1")

    flow = build()
    flow.set_error_handler(ErrorHandler(strategy=ErrorStrategy.CONTINUE))
    assert flow.get_error_handler().strategy is ErrorStrategy.CONTINUE
    state = wait(flow, flow.execute("n", {"count": 3}))
    assert state.status == "completed"
    assert sorted(ns(state)) == [0, 2]
    assert state.get_routine_state("f") == {"status": "error_continued", "error": "bad 1"}


# -- structure as data -------------------------------------------------------------------------


def test_serialize_and_deserialize_rebuild_an_equivalent_flow(workers: int) -> None:
    flow = pipeline(workers)
    flow.routines["scale"].set_error_handler(Retry(max_attempts=2, on=(OSError,), then=Continue()))
    flow.set_error_handler(ErrorHandler(strategy="continue", retry_backoff=3.0))
    flow.connections.clear()
    flow._version += 1
    flow.connect("numbers", "out", "scale", "input", param_mapping={"n": "n"})
    flow.connect("scale", "out", "collect", "input")
    data = json.loads(json.dumps(flow.serialize()))

    copy = Flow()
    copy.deserialize(data)
    assert copy.flow_id == "classic"
    assert copy.execution_strategy == flow.execution_strategy
    assert list(copy.routines) == ["numbers", "scale", "collect"]
    assert copy.routines["scale"].get_config("factor") == 10
    assert copy.routines["scale"].get_error_handler() == Retry(
        max_attempts=2, on=(OSError,), then=Continue()
    )
    handler = copy.get_error_handler()
    assert (handler.strategy, handler.retry_backoff) == (ErrorStrategy.CONTINUE, 3.0)
    assert [c.param_mapping for c in copy.connections] == [{"n": "n"}, None]
    state = wait(copy, copy.execute("numbers", {"count": 3}))
    assert ns(state) == [0, 10, 20]


def test_deserialize_into_a_flow_that_has_routines_is_refused() -> None:
    flow = pipeline(1)
    with pytest.raises(
        StateError,
        match=r"^Cannot deserialize into flow 'classic': it already has routines \(numbers, scale, collect\)$",
    ):
        flow.deserialize(flow.serialize())


def test_the_classic_quickstart_example_runs_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "classic_quickstart.py"
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "completed: True, status: completed"
    assert out[1] == "report: {'engines': ['alpha', 'beta'], 'total': 5, 'status': 'completed'}"
    assert out[2] == "flaky: {'status': 'error_continued', 'error': 'flaky is down'}"
