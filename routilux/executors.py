"""Executors for running a flow's tasks on many cores or on a cluster.

``Flow(..., executor=...)`` takes any ``concurrent.futures.Executor``. Thread pools
run routines in this process; every other executor gets routilux's remote path
(:mod:`routilux.remote`): one importable function, msgspec bytes in and out.
This module ships the adapters (docs/scale-out.md compares them):

* :class:`ProcessPool`: a ``ProcessPoolExecutor`` that replaces itself after one of
  its worker processes dies (a plain ``ProcessPoolExecutor`` is unusable from then on).
* :class:`RayExecutor` (``pip install routilux[ray]``): submits to Ray remote
  functions with Ray's own retries off, so routilux alone decides about re-runs.
* :func:`dask_executor` (``pip install routilux[dask]``): Dask's
  ``client.get_executor(pure=False, retries=0)``.

None of these import Ray or Dask until one is created.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

__all__ = ["ProcessPool", "RayExecutor", "dask_executor"]

P = ParamSpec("P")
T = TypeVar("T")


def _default_context() -> BaseContext:
    # Fresh interpreters rather than fork: forking a process that runs threads (the
    # dispatcher's, the user's) can copy a held lock into the child. Workers then import
    # routines by name, exactly as on a cluster.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class ProcessPool(Executor):
    """A process pool for one machine's cores that survives the death of a worker.

    When a worker process dies (killed, out of memory, a crash in C code), Python's
    ``ProcessPoolExecutor`` fails every task it holds with ``BrokenProcessPool`` and
    refuses new ones. ``ProcessPool`` builds a new pool on the next ``submit``; the
    flow re-runs the lost activations (``Flow(worker_attempts=...)``).

    Args:
        max_workers: Worker processes (default: the number of CPUs).
        mp_context: The multiprocessing context (default: ``forkserver`` where
            available, else ``spawn``).
        initializer: Called in each worker process when it starts.
        initargs: Arguments for ``initializer``.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: BaseContext | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self._args: dict[str, Any] = {
            "max_workers": max_workers,
            "mp_context": mp_context if mp_context is not None else _default_context(),
            "initializer": initializer,
            "initargs": initargs,
        }
        self._lock = threading.Lock()
        self._pool = ProcessPoolExecutor(**self._args)
        self._closed = False
        #: How many times the pool was rebuilt after losing a worker.
        self.rebuilds = 0

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        n: int = self._pool._max_workers  # type: ignore[attr-defined]
        return n

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` in a worker process (rebuilding a broken pool first)."""
        pool = self._pool
        try:
            return pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            with self._lock:
                if self._closed:
                    raise
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = ProcessPoolExecutor(**self._args)
                    self.rebuilds += 1
                pool = self._pool
            return pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the worker processes (see ``Executor.shutdown``)."""
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class RayExecutor(Executor):
    """Submit to Ray remote functions (needs ``ray``: ``pip install routilux[ray]``).

    Connects to the Ray instance that ``ray.init(...)`` started or joined in this
    process; shutting this executor down does not stop Ray. Ray's own task retries are
    off (``max_retries=0``, ``retry_exceptions=False``): a worker that dies fails the
    task's future with Ray's ``WorkerCrashedError`` and routilux re-runs the activation.

    Args:
        options: Further ``ray.remote`` options for every task (``num_cpus=``,
            ``resources=``, ``runtime_env=``…).

    Raises:
        ImportError: Ray is not installed.
        RuntimeError: ``ray.init`` has not been called.
    """

    def __init__(self, **options: Any) -> None:
        try:
            import ray
        except ImportError as exc:
            msg = "RayExecutor needs Ray: pip install 'routilux[ray]'"
            raise ImportError(msg) from exc
        if not ray.is_initialized():
            msg = "RayExecutor: call ray.init(...) first (it starts or joins the cluster)"
            raise RuntimeError(msg)
        self._ray = ray
        self._options = {"max_retries": 0, "retry_exceptions": False, **options}
        self._functions: dict[Callable[..., Any], Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` as a Ray task; ``fn`` must be importable on the workers."""
        if self._closed:
            msg = "cannot schedule new futures after shutdown"
            raise RuntimeError(msg)
        remote = self._functions.get(fn)
        if remote is None:
            with self._lock:
                remote = self._functions.get(fn)
                if remote is None:
                    remote = self._functions[fn] = self._ray.remote(**self._options)(fn)
        future: Future[T] = remote.remote(*args, **kwargs).future()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new tasks (Ray itself keeps running: ``ray.shutdown()`` stops it)."""
        self._closed = True


def dask_executor(client: Any) -> Executor:
    """A ``concurrent.futures`` executor over a Dask ``distributed.Client``.

    It is ``client.get_executor(pure=False, retries=0)``: ``pure=False`` because Dask's
    default merges tasks whose arguments are equal (two activations with the same
    payload would run once), ``retries=0`` so that only routilux re-runs work. Dask's
    scheduler also re-runs a task silently when its worker dies, up to
    ``distributed.scheduler.allowed-failures`` times (default 3) before it raises
    ``KilledWorker``; set that to 0 where the scheduler starts (docs/scale-out.md) so
    every re-run is routilux's and ``Flow(worker_attempts=...)`` means what it says.

    Args:
        client: A connected ``distributed.Client``.
    """
    executor: Executor = client.get_executor(pure=False, retries=0)
    return executor
