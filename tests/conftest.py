"""Shared fixtures: the worker counts every behaviour runs under, and flow cleanup."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import pytest

from routilux import Flow

#: Every behaviour runs inline on the dispatcher (1) and on a thread pool (4).
WORKERS = (1, 4)


@pytest.fixture(params=WORKERS, ids=lambda n: f"workers{n}")
def workers(request: pytest.FixtureRequest) -> int:
    """``max_workers`` for the flow under test: 1 (inline) and 4 (pool)."""
    value: int = request.param
    return value


@pytest.fixture(autouse=True)
def _shutdown_flows(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Release the worker threads of every flow a test created, when the test ends.

    Without this, each pool-mode flow keeps its idle workers until garbage collection,
    and a long session piles up hundreds of threads.
    """
    created: weakref.WeakSet[Flow] = weakref.WeakSet()
    original = Flow.__init__

    def tracking_init(self: Flow, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        created.add(self)

    monkeypatch.setattr(Flow, "__init__", tracking_init)
    yield
    for flow in list(created):
        # wait=False: a test that failed may leave a routine blocked; never hang teardown.
        flow.shutdown(wait=False)
