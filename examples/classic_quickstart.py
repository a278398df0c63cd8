"""A routilux 0.10-style flow, running unchanged on the new engine.

Three searches fan out from one trigger, an aggregator collects their results with
the ``append`` merge strategy, and a report routine prints the total. Nothing here
uses the typed DSL: it is the classic ``Routine``/``Flow.connect``/``execute`` API.

Run: ``python examples/classic_quickstart.py``
"""

from __future__ import annotations

from typing import Any

from routilux import ErrorHandler, ErrorStrategy, Flow, JobState, Routine


class Trigger(Routine):
    """Entry routine: emits the query to every connected search."""

    def __init__(self) -> None:
        super().__init__()
        self.trigger_slot = self.define_slot("trigger", handler=self._handle_trigger)
        self.output_event = self.define_event("query", ["query"])

    def _handle_trigger(self, query: str = "routilux", **kwargs: Any) -> None:
        self.emit("query", query=query)


class Search(Routine):
    """A fake search engine; its name comes from the config (routines take no arguments)."""

    def __init__(self) -> None:
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self._handle_input)
        self.output_event = self.define_event("result", ["engine", "hits"])

    def _handle_input(self, query: str) -> None:
        engine = self.get_config("engine", "?")
        if engine == "flaky":
            msg = f"{engine} is down"
            raise ConnectionError(msg)
        hits = [f"{engine}:{query}:{i}" for i in range(self.get_config("hits", 2))]
        self.emit("result", engine=engine, hits=hits)


class Aggregator(Routine):
    """Waits for every expected engine, using the ``append`` merge strategy."""

    def __init__(self) -> None:
        super().__init__()
        self.input_slot = self.define_slot(
            "input", handler=self._handle_input, merge_strategy="append"
        )
        self.output_event = self.define_event("done", ["engines", "hits"])

    def _handle_input(self, engine: list[str], hits: list[list[str]]) -> None:
        # With "append", each key holds everything received so far in this job.
        if len(engine) == self.get_config("expected", 1):
            self.emit("done", engines=sorted(engine), hits=[h for hs in hits for h in hs])


class Report(Routine):
    """Keeps the final summary in the job's routine state."""

    def __init__(self) -> None:
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self._handle_input)

    def _handle_input(self, **data: Any) -> None:
        ctx = self.get_execution_context()
        if ctx is not None:
            ctx.job_state.update_routine_state(
                ctx.routine_id, {"engines": data["engines"], "total": len(data["hits"])}
            )


def main() -> None:
    flow = Flow(flow_id="classic_quickstart", execution_strategy="concurrent", max_workers=4)
    flow.add_routine(Trigger(), "trigger")
    for name, hits in (("alpha", 2), ("beta", 3), ("flaky", 1)):
        search = Search()
        search.set_config(engine=name, hits=hits)
        if name == "flaky":
            search.set_as_optional()  # its failure is recorded, and the job goes on
        flow.add_routine(search, name)
        flow.connect("trigger", "query", name, "input")
    aggregator = Aggregator()
    aggregator.set_config(expected=2)
    flow.add_routine(aggregator, "aggregator")
    for name in ("alpha", "beta", "flaky"):
        flow.connect(name, "result", "aggregator", "input")
    flow.add_routine(Report(), "report")
    flow.connect("aggregator", "done", "report", "input")
    flow.set_error_handler(ErrorHandler(strategy=ErrorStrategy.STOP))

    job_state = flow.execute("trigger", entry_params={"query": "workflows"})
    completed = JobState.wait_for_completion(flow, job_state, timeout=10)

    print(f"completed: {completed}, status: {job_state.status}")
    print(f"report: {job_state.get_routine_state('report')}")
    print(f"flaky: {job_state.get_routine_state('flaky')}")
    emitted = [f"{r.routine_id}.{r.event_name}" for r in job_state.get_execution_history()]
    print(f"history: {emitted}")
    flow.shutdown()


if __name__ == "__main__":
    main()
