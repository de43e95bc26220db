"""Run the "It knows the shopper" scenarios against a running server and print a report.

    .venv/bin/python scripts/scenarios.py --url http://127.0.0.1:8000 --api-key KEY
    .venv/bin/python scripts/scenarios.py --only stated,session

Only HTTP is used (urllib); every shopper a scenario creates is deleted at its end. Exits 0
when every scenario passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from web.scenarios import SCENARIOS, HttpClient, format_report, run_scenarios  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    p.add_argument("--api-key", default=os.environ.get("SHOPPER_API_KEY"),
                   help="the server key (default $SHOPPER_API_KEY)")
    p.add_argument("--only", default="", help=f"comma-separated names: {', '.join(SCENARIOS)}")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    args = p.parse_args(argv)
    if not args.api_key:
        p.error("--api-key (or SHOPPER_API_KEY) is required: the scenarios act as the shop")
    only = [n.strip() for n in args.only.split(",") if n.strip()] or None
    unknown = sorted(set(only or ()) - set(SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    results = run_scenarios(HttpClient(args.url, timeout=args.timeout), args.api_key, only)
    print(format_report(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
