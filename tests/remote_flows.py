"""Routines for the process-pool and cluster tests.

Worker processes import routines by ``module:qualname``, so the routines these tests
run remotely live here, in a module the workers can import (``tests/`` is on their
``sys.path``), not inside test functions.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from routilux import Append, Latest, State, routine


class Doc(msgspec.Struct):
    """A payload type: it must come back as a ``Doc`` on both sides of the boundary."""

    title: str
    words: int


@dataclasses.dataclass
class Summary:
    titles: list[str]
    words: int


class Refused(Exception):
    """A user exception with several arguments (its ``str`` is the tuple's)."""


@routine
def shout_doc(doc: Doc) -> Doc:
    assert isinstance(doc, Doc), type(doc)
    return Doc(doc.title.upper(), doc.words)


@routine
def summarize(docs: Append[Doc]) -> Summary:
    assert all(isinstance(d, Doc) for d in docs), docs
    return Summary(sorted(d.title for d in docs), sum(d.words for d in docs))


@routine
def picky(x: int) -> int:
    """Refuse odd numbers."""
    if x % 2:
        raise ValueError(f"odd number {x}")
    return x * 10


@routine
def refuse(x: int) -> int:
    raise Refused("no", x)


@routine
def each(values: list[int]) -> Iterator[int]:
    yield from values


@routine
def total_of(values: Append[int]) -> int:
    return sum(values)


@routine
def whoami(x: int) -> int:
    """The pid of the process that ran the activation."""
    return os.getpid()


@routine
def opaque_out(x: int) -> Any:
    """Return a value msgspec cannot encode."""
    return threading.Lock()


@routine
def take_any(x: Any) -> int:
    return 1


def _attempt(where: str, name: str) -> int:
    """Record one attempt of ``name`` under ``where``; return how many there were."""
    path = Path(where) / f"{name}.attempts"
    with path.open("a") as f:
        f.write(f"{os.getpid()}\n")
    return len(path.read_text().splitlines())


class Tally(State):
    """A routine's per-job state."""

    seen: int = 0
    total: int = 0


@routine
def running_total(x: int, tally: Tally) -> int:
    tally.seen += 1
    tally.total += x
    return tally.total


@routine
def victim(x: int, where: Latest[str], tally: Tally) -> int:
    """Double ``x``, counting in its state; for x == 3 the first attempt blocks forever.

    It first reports its pid on the FIFO ``where/pid``; the test reads it (a blocking
    read, no polling) and kills that process. The re-run finds its first attempt
    recorded and finishes. The killed attempt had already counted in its state.
    """
    tally.seen += 1
    tally.total += x * 2
    if x == 3 and _attempt(where, "victim") == 1:
        with (Path(where) / "pid").open("w") as fifo:
            fifo.write(str(os.getpid()))
        threading.Event().wait()
    return x * 2


@routine
def crash(x: int, where: Latest[str]) -> int:
    """Kill the worker process running it, on every attempt."""
    _attempt(where, "crash")
    os.kill(os.getpid(), signal.SIGKILL)
    return x
