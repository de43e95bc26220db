"""Benchmark: see web/benchmarks/turn.py (`--help` for the flags). Prints a table, then one
line of JSON with every figure."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from web.benchmarks.turn import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
