#!/usr/bin/env bash
# `make bench`: benchmarks that print `RESULT name=value` lines, every ratio measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/perfagent-target}"
bash local/venv.sh
echo "==> parser: ours vs Python prometheus_client on the same ~3 MB payload"
cargo bench -p perfagent --bench parse_vs_python
echo "==> API: a warm in-process request (in-memory store) vs the seed's 8 ms"
cargo bench -p perfagent --bench api
