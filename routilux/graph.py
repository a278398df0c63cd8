"""The compiled form of a flow's graph, built once per shape and shared by its jobs.

A :class:`CNode` carries everything the hot path needs as plain attributes:
routes per event (transform, destination index, slot index), slot policies, and
for each collecting slot (``Append``/``Reduce``) the nodes that can still
deliver to it (its ancestors), inverted into ``desc_colls`` so a task's start
and end update a counter instead of walking the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .spec import Policy, RoutineSpec, SlotSpec

if TYPE_CHECKING:
    from .connection import Connection
    from .node import NodeBase

__all__ = ["CNode", "CompiledFlow", "Route"]

#: (transform or None, destination node index, destination slot index, param_mapping or None)
Route = tuple[Callable[[Any], Any] | None, int, int, dict[str, str] | None]


class CNode:
    """One node, compiled for the scheduler."""

    __slots__ = (
        "coll_ids",
        "concurrency",
        "desc_colls",
        "direct",
        "events",
        "fast",
        "index",
        "invoke",
        "name",
        "needs_context",
        "node",
        "offload",
        "out_keys",
        "policies",
        "pool",
        "routes",
        "slot_specs",
        "spec",
        "tail_fast",
        "totals",
    )

    def __init__(self, index: int, node: NodeBase) -> None:
        spec: RoutineSpec = node.spec
        self.index = index
        self.node = node
        self.name = node.node_name
        self.spec = spec
        self.invoke = spec.invoke
        self.direct = spec.direct  # the user's function, called without invoke's frame
        self.concurrency = spec.concurrency
        self.slot_specs: tuple[SlotSpec, ...] = spec.slots
        self.policies: tuple[Policy, ...] = tuple(s.policy for s in spec.slots)
        # A single required queue slot: a delivery is an activation (the common streaming case).
        self.fast = (
            len(spec.slots) == 1 and spec.slots[0].policy is Policy.QUEUE and spec.slots[0].required
        )
        self.events = frozenset(e.name for e in spec.events)
        self.routes: dict[str, tuple[Route, ...]] = {}
        self.out_keys = {e.name: f"{self.name}.{e.name}" for e in spec.events}
        # (collection id, node index) of every collecting slot this node can feed.
        self.desc_colls: tuple[tuple[int, int], ...] = ()
        self.coll_ids: tuple[int, ...] = ()
        # Stateful DSL routines find their node's state through the task context too.
        self.pool: list[Any] = []  # recycled NodeRuns (scheduler.JobRun.recycle)
        # Counters summed over finished jobs: activations, emits, errors, retries, busy
        # time, jobs. Flow._compile shares one list per node name across recompiles.
        self.totals: list[float] = [0, 0, 0, 0, 0.0, 0]
        self.needs_context = spec.kind == "classic" or spec.state is not None
        # A worker runs it with a dict for emit and applies its one emit with its end.
        self.tail_fast = spec.tail_emit and not self.needs_context
        # Activations with a timeout run off the dispatcher thread so they can be abandoned.
        self.offload = spec.timeout is not None


class CompiledFlow:
    """The graph of a flow at one version: nodes by index and name, routes, ancestry."""

    def __init__(self, nodes: list[NodeBase], connections: list[Connection]) -> None:
        self.nodes = [CNode(i, n) for i, n in enumerate(nodes)]
        self.by_name = {c.name: c for c in self.nodes}
        index = {id(n): i for i, n in enumerate(nodes)}
        routes: dict[tuple[int, str], list[Route]] = {}
        producers: dict[tuple[int, int], set[int]] = {}
        for conn in connections:
            src = index[id(conn.source.node)]
            dst = index[id(conn.target.node)]
            si = self.nodes[dst].spec.slot_index[conn.target.name]
            routes.setdefault((src, conn.source.name), []).append(
                (conn.transform, dst, si, conn.param_mapping)
            )
            producers.setdefault((dst, si), set()).add(src)
        for cn in self.nodes:
            for ev in cn.events:
                cn.routes[ev] = tuple(routes.get((cn.index, ev), ()))
        self.producers = producers
        # DSL routines without slots run once per job; a classic routine is only ever
        # entered through its slots (0.10 semantics), so it is no source.
        self.sources = tuple(
            cn.index for cn in self.nodes if not cn.slot_specs and cn.spec.kind != "classic"
        )
        preds: list[set[int]] = [set() for _ in self.nodes]
        for (dst, _si), srcs in producers.items():
            preds[dst].update(srcs)
        self.preds = preds
        desc: list[list[tuple[int, int]]] = [[] for _ in self.nodes]
        self.n_colls = 0
        for cn in self.nodes:
            ids: list[int] = []
            for si, pol in enumerate(cn.policies):
                if not pol.collects:
                    ids.append(-1)
                    continue
                cid = self.n_colls
                self.n_colls += 1
                ids.append(cid)
                for anc in self.ancestors(producers.get((cn.index, si), set())):
                    desc[anc].append((cid, cn.index))
            cn.coll_ids = tuple(ids)
        for cn in self.nodes:
            cn.desc_colls = tuple(desc[cn.index])

    def ancestors(self, start: set[int]) -> set[int]:
        """Every node that can reach one of ``start`` (``start`` included)."""
        seen = set(start)
        stack = list(start)
        while stack:
            for p in self.preds[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return seen
