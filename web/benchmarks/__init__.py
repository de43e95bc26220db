"""Benchmarks of issue 5: one turn against its floor, the production server under load, the
catalog index (embedding, build, start-up, memory) and a synthetic 1M-product index.

Each ``scripts/bench_*.py`` is a thin wrapper around ``main`` of one module here; every run
prints a table and ends with one line of JSON holding every figure. None of this runs in the
test suite (no timed tests).
"""
