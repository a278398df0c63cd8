"""routilux's benchmark suite (issue 6): ``python -m benchmarks`` prints one table.

Each workload lives in its own module and measures a plain-Python floor in the
same process; see ``benchmarks/README.md`` for how to run it and what the
figures mean.
"""
