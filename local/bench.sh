#!/usr/bin/env bash
# `make bench`: every benchmark, each printing `RESULT name=value` lines (every ratio between figures
# measured in the same run), then a summary against the goals of docs/performance.md
# (local/bench/summary.py). Benchmarks only report: nothing here is part of `make test`.
#
#   1. parser: ours vs Python's prometheus_client on the same ~3 MB (shared/benches/parse_vs_python.rs)
#   2. API: a warm in-process request, in-memory store (shared/benches/api.rs)
#   3. the collector binary over 1,000 simulated vLLM servers writing to an emulated DynamoDB, against
#      a fetch-only pass; snapshot item sizes; every function binary's cold start and size
#      (tests/src/bin/bench_fleet). It starts its own MiniStack on PERFAGENT_BENCH_PORT (default
#      4577, never the local stack's 4566), with its state under a temporary directory, and stops it.
#
# Environment: PERFAGENT_BENCH_PORT, PERFAGENT_BENCH_INSTANCES (1000), PERFAGENT_BENCH_COLD_RUNS (20).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/perfagent-target}"
port="${PERFAGENT_BENCH_PORT:-4577}"
instances="${PERFAGENT_BENCH_INSTANCES:-1000}"
cold_runs="${PERFAGENT_BENCH_COLD_RUNS:-20}"
work=$(mktemp -d /tmp/perfagent-bench.XXXXXX)
results="$work/results.log"
ministack_pid=

say() { printf '==> %s\n' "$*"; }

cleanup() {
  local status=$?
  if [ -n "$ministack_pid" ]; then
    # MiniStack leads its own process group (setsid): end it and anything it spawned, by its pid.
    kill -TERM -- "-$ministack_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$ministack_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$ministack_pid" 2>/dev/null || true
  fi
  if [ "$status" = 0 ]; then
    rm -rf "$work"
  else
    echo "bench failed: logs kept in $work" >&2
  fi
}
trap cleanup EXIT

started=$(date +%s)
# The functions' allocator setting, as the template deploys it.
tunables=$(sed -n 's/^ *GLIBC_TUNABLES: *//p' infra/template.yaml)
if [ -z "$tunables" ]; then
  echo "error: GLIBC_TUNABLES not found in infra/template.yaml" >&2
  exit 1
fi
bash local/venv.sh
say "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every absolute figure; ratios are taken within the run)"

say "building (release): the function binaries, fleetsim, bench_fleet"
# Release, as deployed to AWS (the local stack's `local` profile builds faster, runs no LTO).
cargo build --release -p perfagent-functions --bins
cargo build --release -p perfagent-sim --bin fleetsim
cargo build --release -p perfagent-e2e --bin bench_fleet

{
  # One cargo command, one build: the parser (ours vs Python prometheus_client on the same ~3 MB
  # payload), then the API (a warm in-process request, in-memory store, vs the seed's 8 ms).
  say "parser, then API (shared/benches)"
  cargo bench -p perfagent --bench parse_vs_python --bench api
  # The parser again with the allocator setting the functions are deployed with (the template's
  # GLIBC_TUNABLES), its figures renamed deployed_*; Python runs under it too.
  say "parser with the functions' GLIBC_TUNABLES=$tunables"
  GLIBC_TUNABLES="$tunables" cargo bench -p perfagent --bench parse_vs_python |
    sed -E 's/^RESULT (parse|python)/RESULT deployed_\1/'
} 2>&1 | tee -a "$results"

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "error: port $port is taken; set PERFAGENT_BENCH_PORT to a free one" >&2
  exit 1
fi
say "MiniStack for the benchmark on 127.0.0.1:$port (state in $work)"
mkdir -p "$work/tmp"
env -i \
  PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 TMPDIR="$work/tmp" \
  GATEWAY_PORT="$port" BIND_HOST=127.0.0.1 \
  MINISTACK_ACCOUNT_ID=123456789012 MINISTACK_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  setsid "$root/.venv/bin/ministack" >"$work/ministack.log" 2>&1 </dev/null &
ministack_pid=$!
for _ in $(seq 1 300); do
  curl -sf --max-time 2 "http://127.0.0.1:$port/_localstack/health" >/dev/null 2>&1 && break
  kill -0 "$ministack_pid" 2>/dev/null || {
    tail -n 20 "$work/ministack.log" >&2
    exit 1
  }
  sleep 0.1
done
table="perfagent-bench-$(date +%s)"
AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  .venv/bin/python local/bench/create_table.py "$table"

{
  say "collector, snapshot sizes, cold starts (tests/src/bin/bench_fleet; logs in $work)"
  "$CARGO_TARGET_DIR/release/bench_fleet" \
    --functions "$CARGO_TARGET_DIR/release" --fleetsim "$CARGO_TARGET_DIR/release/fleetsim" \
    --endpoint "http://127.0.0.1:$port" --table "$table" \
    --instances "$instances" --cold-runs "$cold_runs" --work "$work" --glibc-tunables "$tunables"
} 2>&1 | tee -a "$results"

echo "RESULT bench_wall_s=$(($(date +%s) - started))" | tee -a "$results"
echo "RESULT load_average=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results"
.venv/bin/python local/bench/summary.py "$results"
