#!/usr/bin/env bash
# `make fuzz`: builds the cargo-fuzz targets of fuzz/ and runs them one after the other, each for
# FUZZ_RUNS executions (and at most FUZZ_SECONDS when set), seeded with the conformance cases and
# the real captures of ../shared/fixtures. Prints per target the executions, exec/s, duration,
# what libFuzzer saved (crash, timeout, OOM) and its exit status; fails if any target failed.
#
#   FUZZ_RUNS=10000000   executions per target (default: 10 M)
#   FUZZ_SECONDS=0       wall-clock limit per target in seconds (0: none)
#   FUZZ_TARGETS="..."   which targets (default: all four, in the order below)
#   FUZZ_MAX_LEN=8192    largest input libFuzzer makes; longer seeds are cut there, and the real
#                        captures are also seeded as runs of whole families of at most this size
#   FUZZ_TIMEOUT=10      seconds one input may run before it counts as a hang
#   FUZZ_RSS_MB=2048     memory limit of the fuzzing process (beyond it: OOM)
#   FUZZ_SANITIZER=none  cargo-fuzz sanitizer; the crate has no `unsafe`, so ASan (`address`)
#                        finds nothing more and halves the speed
#
# Reproduce a failure: the script prints the saved input; the built target replays it:
#   ~/.cache/perfagent-fuzz-target/x86_64-unknown-linux-gnu/release/TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CARGO_FUZZ_VERSION=0.13.2
FIXTURES="$ROOT/../shared/fixtures"
FUZZ_RUNS=${FUZZ_RUNS:-10000000}
FUZZ_SECONDS=${FUZZ_SECONDS:-0}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-8192}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-parse_lenient parse_strict engine_normalize collect_normalize_body}"

# cargo-fuzz passes `-Z` flags (the sanitizers, build-std) that only nightly takes; this lets the
# stable toolchain take them too. A separate target dir: the instrumented builds would otherwise
# replace the workspace's.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/perfagent-fuzz-target}"

CARGO_FUZZ="$ROOT/.tools/bin/cargo-fuzz"
if [ "$("$CARGO_FUZZ" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION into .tools/ (first time only, ~30 s)"
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked \
    --root "$ROOT/.tools" --quiet
fi

[ -d "$FIXTURES/promtext" ] || {
  echo "error: $FIXTURES/promtext not found (the project kit's shared/ beside the repository)" >&2
  exit 1
}

# Every target starts from every seed: the conformance cases (<set>/<case>/metrics) and the real
# captures, whole and cut into runs of whole families (from one `# HELP` line to the next) of at
# most FUZZ_MAX_LEN bytes, so that no family is beyond the length libFuzzer reads. Copied, not
# linked: libFuzzer adds the inputs it finds to the same directory.
seed() {
  local corpus=$1 f case name
  mkdir -p "$corpus"
  for f in "$FIXTURES"/promtext/*/*/metrics; do
    case=${f#"$FIXTURES/promtext/"}
    case=${case%/metrics}
    cp -n "$f" "$corpus/seed-${case//\//-}"
  done
  for f in "$FIXTURES"/metrics/*.prom; do
    name=$(basename "$f" .prom)
    cp -n "$f" "$corpus/seed-capture-$name"
    LC_ALL=C awk -v max="$FUZZ_MAX_LEN" -v out="$corpus/seed-capture-$name-part" '
      function emit() { if (buf != "") { n++; printf "%s", buf > (out n); close(out n); buf = "" } }
      function add() { if (length(buf) + length(fam) > max) emit(); buf = buf fam; fam = "" }
      /^# HELP / { add() }
      { fam = fam $0 "\n" }
      END { add(); emit() }' "$f"
  done
}

echo "==> building ${TARGETS[*]} (sanitizer: $FUZZ_SANITIZER)"
HOST=$(rustc -vV | sed -n 's/^host: //p')
"$CARGO_FUZZ" build --sanitizer "$FUZZ_SANITIZER" --fuzz-dir fuzz --target "$HOST"

mkdir -p fuzz/logs
summary=()
failed=0
for t in "${TARGETS[@]}"; do
  corpus=fuzz/corpus/$t
  artifacts=fuzz/artifacts/$t
  log=fuzz/logs/$t.log
  seed "$corpus"
  mkdir -p "$artifacts"
  stamp=$(mktemp)
  limits=(-runs="$FUZZ_RUNS")
  [ "$FUZZ_SECONDS" -gt 0 ] && limits+=(-max_total_time="$FUZZ_SECONDS")
  echo "==> $t: ${limits[*]}, $(find "$corpus" -type f | wc -l) inputs in $corpus (log: $log)"
  start=$(date +%s.%N)
  status=0
  # The binary built above, not `cargo fuzz run`: that would rebuild first whenever the tree
  # changed since, and the targets would run different code, the build inside their time.
  "$CARGO_TARGET_DIR/$HOST/release/$t" "$corpus" \
    "${limits[@]}" -dict=fuzz/prometheus.dict -max_len="$FUZZ_MAX_LEN" -timeout="$FUZZ_TIMEOUT" \
    -rss_limit_mb="$FUZZ_RSS_MB" -print_final_stats=1 -artifact_prefix="$artifacts/" \
    >"$log" 2>&1 || status=$?
  seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(awk -v n="${runs:-0}" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
  found=$(find "$artifacts" -type f -newer "$stamp" | sort)
  rm -f "$stamp"
  crashes=$(grep -c . <<<"$found" || true)
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    echo "FAILED $t (exit $status); last lines of $log:" >&2
    tail -n 30 "$log" >&2
    for f in $found; do echo "saved input: $f" >&2; done
  fi
  summary+=("$(printf '%-24s %12s %8s %7s %8s %5s' "$t" "${runs:-?}" "${rate:-?}" "$seconds" "$crashes" "$status")")
done

printf '\n%-24s %12s %8s %7s %8s %5s\n' target executions exec/s seconds crashes exit
printf '%s\n' "${summary[@]}"
exit "$failed"
