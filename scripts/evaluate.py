"""Evaluate the assistant with simulated shoppers against a plain search box.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/evaluate.py --shoppers 60
    .venv/bin/python scripts/evaluate.py --url http://127.0.0.1:8000 --show-failures 3

Without --url the app is built in this process on --data-dir (the first run builds the index).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from web.evaluation import (  # noqa: E402
    FlaskClient,
    HttpClient,
    format_report,
    in_process_client,
    run_evaluation,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shoppers", type=int, default=300, help="simulated shoppers (default 300)")
    p.add_argument("--seed", type=int, default=7, help="target sampling seed (default 7)")
    p.add_argument("--catalog", default="fashion")
    p.add_argument("--max-turns", type=int, default=6)
    p.add_argument("--url", help="a live server's base URL; default: build the app in process")
    p.add_argument("--data-dir", default=os.environ.get("SHOPPER_DATA_DIR", "./var"))
    p.add_argument("--api-key", default=os.environ.get("SHOPPER_API_KEY"),
                   help="the server key (default $SHOPPER_API_KEY)")
    p.add_argument("--show-failures", type=int, default=0, metavar="K",
                   help="print K failed assistant dialogues")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    p.add_argument("--embedder", choices=("onnx", "torch"),
                   help="in process: what encodes shoppers' words (default $SHOPPER_EMBEDDER, "
                        "else onnx when onnxruntime is installed, as the server)")
    args = p.parse_args(argv)
    api_key = args.api_key
    embedder = None
    if args.url:
        client: HttpClient | FlaskClient = HttpClient(args.url)
    else:
        client, api_key = in_process_client(
            args.data_dir, **({"API_KEY": api_key} if api_key else {}),
            **({"EMBEDDER": args.embedder} if args.embedder else {}))
        embedder = client.app.extensions["shopper"].assistant.embedder.name
    result = run_evaluation(client, args.shoppers, args.seed, args.catalog, args.max_turns,
                            api_key=api_key, progress=not args.json)
    result["embedder"] = embedder
    if args.json:
        print(json.dumps({k: v for k, v in result.items()
                          if k not in ("failures", "violation_notes")}, sort_keys=True))
    else:
        print(format_report(result, args.show_failures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
