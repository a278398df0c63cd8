"""Quickstart: a small order pipeline, end to end.

Reads a bundled CSV of orders, validates each line (bad lines are routed to a
separate event), converts prices with a sticky exchange-rate table, and
aggregates revenue per customer once every order has been priced. Run it with
``make demo``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec

from routilux import Append, Emit, Flow, JobState, Latest, Outputs, SQLiteStore, routine

DATA = Path(__file__).with_name("data") / "orders.csv"


class Order(msgspec.Struct, frozen=True):
    order_id: int
    customer: str
    sku: str
    qty: int
    unit_price: float
    currency: str


class Priced(msgspec.Struct, frozen=True):
    order_id: int
    customer: str
    usd: float


class Report(msgspec.Struct):
    orders: int
    revenue_usd: float
    by_customer: dict[str, float]


class Parsed(Outputs):
    ok: Emit[Order]
    rejected: Emit[str]


@routine
def read_lines(path: str) -> Iterator[str]:
    """Yield the data lines of a CSV file (one emit per line, as it is read)."""
    with open(path, encoding="utf-8") as fh:
        next(fh)  # header
        for line in fh:
            if line.strip():
                yield line.strip()


@routine
def parse(line: str, out: Parsed) -> None:
    """Turn a CSV line into an Order, or reject it with the reason."""
    fields = line.split(",")
    try:
        oid, customer, sku, qty, price, currency = fields
        order = Order(int(oid), customer, sku, int(qty), float(price), currency)
    except ValueError as exc:
        out.rejected(f"{line!r}: {exc}")
        return
    if order.qty <= 0:
        out.rejected(f"{line!r}: quantity must be positive")
    else:
        out.ok(order)


@routine
def price(order: Order, rates: Latest[dict[str, float]]) -> Priced:
    """Convert an order's total to USD with the latest rate table."""
    if order.currency not in rates:
        msg = f"order {order.order_id}: no rate for {order.currency} (rates: {', '.join(rates)})"
        raise KeyError(msg)
    return Priced(
        order.order_id,
        order.customer,
        round(order.qty * order.unit_price * rates[order.currency], 2),
    )


@routine
def report(items: Append[Priced]) -> Report:
    """Aggregate every priced order, once no more can arrive."""
    by_customer: dict[str, float] = {}
    for p in items:
        by_customer[p.customer] = round(by_customer.get(p.customer, 0.0) + p.usd, 2)
    return Report(
        len(items), round(sum(by_customer.values()), 2), dict(sorted(by_customer.items()))
    )


def build():  # type: ignore[no-untyped-def]  # returns (flow, source node, pricer node)
    """Wire the pipeline: read → parse → price → report."""
    with Flow("orders", max_workers=2) as flow:
        src, parser, pricer, summary = read_lines(), parse(), price(), report()
        src.result >> parser.line
        parser.ok >> pricer.order
        pricer.result >> summary.items
    return flow, src, pricer


def show(flow: Flow, state: JobState) -> int:
    """Print a finished job's result and per-routine stats."""
    print(f"job {state.job_id}: {state.status}")
    if state.status != "completed":
        print(f"  error: {state.error}")
        return 1
    (rep,) = state.outputs["report.result"]
    print(f"{rep.orders} orders, revenue {rep.revenue_usd:.2f} USD")
    for customer, usd in rep.by_customer.items():
        print(f"  {customer:<10} {usd:>10.2f}")
    print("rejected:")
    for why in state.outputs.get("parse.rejected", []):
        print(f"  {why}")
    print("per-routine stats:")
    for name, node in flow.nodes.items():
        s = node.stats(state)
        print(
            f"  {name:<12} activations={s.activations:<3} emits={s.emits:<3} "
            f"errors={s.errors} busy={s.busy_time * 1e3:.2f} ms"
        )
    return 0


def main(argv: list[str]) -> int:
    store = SQLiteStore()  # .routilux/jobs.db: every task is journalled there
    flow, src, pricer = build()
    if len(argv) == 2 and argv[0] == "--resume":
        state = store.load(argv[1])
        if state.is_complete():
            flow.typed(state)  # stored outputs are plain data until given the flow's types
        else:
            state = flow.wait(flow.resume(state, store=store), timeout=30)
        return show(flow, state)
    rates = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067}
    state = flow.run(
        src.path(str(DATA)),
        pricer.rates(rates),
        timeout=30,
        store=store,
        checkpoint="every_task",
    )
    code = show(flow, state)
    print(f"stored in {store.path}; if this run is interrupted, continue it with:")
    print(f"  python examples/quickstart.py --resume {state.job_id}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
