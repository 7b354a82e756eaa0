"""Load on a served model: N concurrent clients for S seconds, each posting one request after another.

    python scripts/serve_load.py --url http://127.0.0.1:5001/invocations --clients 50 --seconds 60

Start the server first (`mlflow models serve -m models:/<name>@champion --env-manager local -p 5001`,
with the virtual environment's bin/ on PATH). Each request carries `--rows` texts from the prepared test
split. Prints requests, errors, requests per second and latency p50/p99; a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:5001/invocations")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=1, help="texts per request")
    parser.add_argument("--texts", default="data/prepared/test.parquet")
    args = parser.parse_args()
    texts = pd.read_parquet(Path(args.texts))["text"].astype(str).tolist()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds

    def client(index: int) -> None:
        position = index * args.rows
        while time.perf_counter() < deadline:
            rows = [{"text": texts[(position + i) % len(texts)]} for i in range(args.rows)]
            position += args.rows * args.clients
            body = json.dumps({"dataframe_records": rows}).encode()
            request = urllib.request.Request(args.url, body, {"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                ok = len(answer.get("predictions", [])) == args.rows
                problem = None if ok else f"{len(answer.get('predictions', []))} predictions for {args.rows} rows"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                (errors.append(problem) if problem else latencies.append(elapsed))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    result = {"clients": args.clients, "seconds": round(wall, 1), "rows_per_request": args.rows,
              "requests": len(latencies) + len(errors), "errors": len(errors),
              "requests_per_second": round((len(latencies) + len(errors)) / wall, 1),
              "p50_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
              "p99_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
              "first_errors": sorted(set(errors))[:3]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
