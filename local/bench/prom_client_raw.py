#!/usr/bin/env python3
"""Prints every sample Python's prometheus_client parses from an exposition, one JSON object a line,
in the shape of `perfagent parse --raw`: {"name", "labels", "value"} (+ "timestamp_ms" when present),
NaN/+Inf/-Inf as the strings "NaN", "+Inf", "-Inf". Used by shared/tests/raw_vs_python.rs.

Usage: .venv/bin/python local/bench/prom_client_raw.py FILE|-

Sample names are printed as prometheus_client reports them: the full sample name as written in the
text (it renames the *family* of a counter by dropping `_total`, never a sample).
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(v: float):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return float(v)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    out = sys.stdout
    for family in text_string_to_metric_families(data.decode("utf-8")):
        for s in family.samples:
            line = {"name": s.name, "labels": s.labels, "value": value(s.value)}
            if s.timestamp is not None:
                # prometheus_client turns the text's milliseconds into float seconds.
                line["timestamp_ms"] = round(float(s.timestamp) * 1000)
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
