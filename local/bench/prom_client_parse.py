#!/usr/bin/env python3
"""Times prometheus_client's text parser on one exposition file, for shared/benches/parse_vs_python.rs.

Usage: .venv/bin/python local/bench/prom_client_parse.py FILE [RUNS]

Measures only `list(text_string_to_metric_families(text))` (the file is read and decoded first) and
prints `python_mb_per_s=<median MB/s>` plus the best run and the sample count, one `key=value` a line.
"""
import statistics
import sys
import time

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) == 3 else 5
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("utf-8")
    megabytes = len(data) / 1e6

    list(text_string_to_metric_families(text))  # warm-up: imports, regex compilation
    seconds = []
    samples = 0
    for _ in range(runs):
        start = time.perf_counter()
        families = list(text_string_to_metric_families(text))
        seconds.append(time.perf_counter() - start)
        samples = sum(len(f.samples) for f in families)

    print(f"python_runs={runs}")
    print(f"python_samples={samples}")
    print(f"python_best_mb_per_s={megabytes / min(seconds):.2f}")
    print(f"python_mb_per_s={megabytes / statistics.median(seconds):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
