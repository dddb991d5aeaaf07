#!/usr/bin/env bash
# `make test`: every test, on a fresh clone with only the toolchains installed. Installs what it
# needs (pinned, into .venv), starts the local stack for the end-to-end stage and stops it after.
#   PERFAGENT_KEEP_STACK=1  leave the local stack running afterwards (for a look, or `make down`)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/perfagent-target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"
started=$SECONDS
log=$(mktemp)
# Every `cargo test` output goes to $log too, for the totals printed at the end.
count() { tee -a "$log"; }
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

step "python tools (.venv, pinned by local/requirements.lock)"
bash local/venv.sh

step "format (cargo fmt --check)"
cargo fmt --all -- --check

step "lint (cargo clippy --all-targets -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, property, conformance, fixture and CLI tests"
cargo test --workspace --exclude perfagent-e2e 2>&1 | count

step "infrastructure checks (cfn-lint + IAM rule, checkov, sam validate --lint, asl-validator)"
bash local/check-infra.sh
bash statemachine/validate.sh

step "local stack (emulator + infra/template.yaml deployed into it)"
if [ "${PERFAGENT_KEEP_STACK:-0}" != 1 ]; then
  trap 'bash local/down.sh >/dev/null 2>&1 || true' EXIT
fi
# The tests play the schedule themselves (each invoke names its slot), so the live schedules are
# off: a scheduled pass landing between two assertions would make them depend on timing.
PERFAGENT_PARAMETERS="CollectorScheduleState=DISABLED ${PERFAGENT_PARAMETERS:-}" bash local/up.sh

step "end-to-end tests against the deployed stack"
cargo test -p perfagent-e2e --tests -- --test-threads=1 2>&1 | count

step "the demo (make demo's story: collection → analysis → two workflows) against the same stack"
cargo build --quiet -p perfagent-e2e --bin demo
"$CARGO_TARGET_DIR/debug/demo"

step "all tests passed in $((SECONDS - started)) s"
awk '{for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i }}
     END { printf "tests: %d passed, %d failed\n", p, f }' < <(grep -E '^test result:' "$log")
