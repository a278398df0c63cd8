"""The same flows on a cluster: Ray and Dask, each a local cluster bound to 127.0.0.1.

One cluster of each per test session (starting them is the slow part: Ray takes
seconds). Marked ``cluster``: ``make test-cluster`` runs them, and ``.ci/run`` too.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pytest
import remote_flows as rf
from test_behaviour import CASES, Case
from test_remote import _multiset

from routilux import Flow, JobStatus
from routilux.executors import RayExecutor, dask_executor

pytestmark = pytest.mark.cluster

TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="session")
def ray_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    """A two-CPU Ray instance on 127.0.0.1, no dashboard, its files under the test tmp dir."""
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's workers are fresh interpreters: they import remote_flows from tests/.
        "PYTHONPATH": os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """Two single-thread Dask worker processes on 127.0.0.1, no dashboard."""
    import dask
    from distributed import Client, LocalCluster

    # The scheduler must not re-run a task whose worker died (it would, silently, up to
    # 3 times): routilux owns re-runs.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(params=["ray", "dask"])
def cluster(request: pytest.FixtureRequest) -> Executor:
    """An executor on each cluster engine."""
    if request.param == "ray":
        ex: Executor = request.getfixturevalue("ray_executor")
        return ex
    return dask_executor(request.getfixturevalue("dask_client"))


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_behaviour_table_on_a_cluster(case: Case, cluster: Executor) -> None:
    with Flow("table", executor=cluster, max_workers=4, **case.flow_kw) as flow:
        inputs = case.build(flow)
    state = flow.run(*inputs, timeout=60)

    assert state.status is JobStatus.COMPLETED, state.error
    if case.ordered:
        assert state.outputs == case.outputs
    else:
        for key, expected in case.outputs.items():
            assert _multiset(state.outputs[key]) == _multiset(expected), key
    activations = {n: rs.activations for n, rs in state.routine_states.items()}
    assert activations == {n: case.calls.get(n, 0) for n in flow.nodes}
    if case.check is not None:
        case.check(state)


def test_worker_killed_mid_activation_on_a_cluster(cluster: Executor, tmp_path: Path) -> None:
    fifo = tmp_path / "pid"
    os.mkfifo(fifo)
    with Flow(executor=cluster, max_workers=2) as flow:
        v, tot = rf.victim(), rf.total_of()
        v.result >> tot.values
    job = flow.start(v.where(str(tmp_path)), *[v.x(i) for i in range(6)], timeout=60)
    with fifo.open() as f:  # blocks until the activation of x=3 reports its pid
        pid = int(f.read())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    state = job.wait(timeout=60)

    assert state.status is JobStatus.COMPLETED, state.error
    assert state.outputs == {"total_of.result": [30]}
    assert state.routine_states["victim"].activations == 6
    assert state.routine_states["victim"].state == {"seen": 6, "total": 30}
    assert len((tmp_path / "victim.attempts").read_text().splitlines()) == 2


def test_ray_worker_loss_is_typed_and_bounded(ray_executor: Executor, tmp_path: Path) -> None:
    with Flow(executor=ray_executor, max_workers=1, worker_attempts=2) as flow:
        c = rf.crash()
    state = flow.run(c.where(str(tmp_path)), c.x(5), timeout=60)
    assert state.error is not None
    assert state.error.message.startswith(
        "Worker lost while running `crash`: 2 attempts of 2 ended with the worker process "
        "gone (WorkerCrashedError: "
    )
    assert len((tmp_path / "crash.attempts").read_text().splitlines()) == 2
