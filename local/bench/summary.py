#!/usr/bin/env python3
"""The closing table of `make bench`: every goal of docs/performance.md (issue #7) next to the figure
measured in this run, read from the `RESULT name=value` lines of the benchmarks' output.

Usage: .venv/bin/python local/bench/summary.py RESULTS_LOG
Exits 0 whether goals are met or not (benchmarks report; tests assert), 1 if a figure is missing.
"""
import sys

FUNCTIONS = ("collector", "api", "analyzer", "workflow_stage")

# (what, RESULT name, goal, "min" if the figure must be at least the goal / "max" at most, unit)
GOALS = [
    ("parser throughput, median run", "parse_mb_per_s", 1000, "min", "MB/s"),
    ("parser throughput, best run", "parse_best_mb_per_s", 1000, "min", "MB/s"),
    ("parser vs Python prometheus_client, medians", "parse_vs_python", 150, "min", "x"),
    ("parser vs Python prometheus_client, best runs", "parse_vs_python_best", 150, "min", "x"),
    ("the same four with the functions' GLIBC_TUNABLES: median", "deployed_parse_mb_per_s", 1000, "min", "MB/s"),
    ("  best run", "deployed_parse_best_mb_per_s", 1000, "min", "MB/s"),
    ("  vs Python, medians", "deployed_parse_vs_python", 150, "min", "x"),
    ("  vs Python, best runs", "deployed_parse_vs_python_best", 150, "min", "x"),
    ("collector: 1,000 servers in one invocation", "collector_pass_s", 5, "max", "s"),
    ("collector: peak RSS of the process", "collector_peak_rss_mb", 64, "max", "MB"),
    ("API: warm in-process request, p50", "api_p50_ms", 0.8, "max", "ms"),
    ("snapshot item, largest (1 write unit)", "snapshot_item_bytes_max", 1024, "max", "B"),
    ("snapshot item, largest of the engine mix", "mixed_snapshot_item_bytes_max", 1024, "max", "B"),
] + [
    (f"{f}: process start to first event, p50", f"coldstart_{f}_p50_ms", 30, "max", "ms")
    for f in FUNCTIONS
]

# Reported next to the goals, without one of their own.
INFO = [
    ("collector scrapes/s (cold invocation)", "collector_scrapes_per_s"),
    ("fetch-only scrapes/s, same fleet and concurrency", "fetch_only_scrapes_per_s"),
    ("collector / fetch-only rate", "collector_vs_fetch_only"),
    ("fetch + parse + normalize scrapes/s (no store)", "fetch_parse_scrapes_per_s"),
    ("collector warm invocation, s", "collector_warm_pass_s"),
    ("collector CPU, both invocations, s", "collector_cpu_s"),
    ("API p99, ms", "api_p99_ms"),
    ("snapshot item p50 / p95, B", ("snapshot_item_bytes_p50", "snapshot_item_bytes_p95")),
] + [
    (f"{f} binary, MB", f"binary_{f}_bytes") for f in FUNCTIONS
] + [
    ("load average at the end", "load_average"),
    ("make bench wall time, s", "bench_wall_s"),
]


def read(path: str) -> dict:
    found = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("RESULT ") and "=" in line:
                name, _, value = line[len("RESULT "):].partition("=")
                try:
                    found[name.strip()] = float(value)
                except ValueError:
                    pass
    return found


def fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    r = read(sys.argv[1])
    missing = []
    rows = []
    for what, name, goal, sense, unit in GOALS:
        if name not in r:
            missing.append(name)
            continue
        v = r[name]
        met = v >= goal if sense == "min" else v <= goal
        bound = "≥" if sense == "min" else "≤"
        rows.append((what, f"{fmt(v)} {unit}", f"{bound} {fmt(goal)} {unit}", "met" if met else "MISSED"))
    print()
    print("==> summary against the goals (docs/performance.md)")
    width = max(len(w) for w, *_ in rows) if rows else 10
    print(f"{'':{width}}  {'measured':>14}  {'goal':>14}")
    for what, value, goal, verdict in rows:
        print(f"{what:{width}}  {value:>14}  {goal:>14}  {verdict}")
    print()
    for what, name in INFO:
        names = name if isinstance(name, tuple) else (name,)
        if not all(n in r for n in names):
            continue
        values = [r[n] / 1e6 if n.endswith("_bytes") else r[n] for n in names]
        print(f"{what:{width}}  {' / '.join(fmt(v) for v in values):>14}")
    if missing:
        print(f"\nmissing figures (a benchmark failed?): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
