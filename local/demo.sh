#!/usr/bin/env bash
# `make demo`: installs what it needs (pinned), starts the emulator, builds and deploys
# infra/template.yaml into it, then runs the demo (tests/src/bin/demo.rs) against the deployed stack.
# Stops the stack at the end unless PERFAGENT_KEEP_STACK=1 (then `make down` stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/perfagent-target}"
started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*"; }

if [ "${PERFAGENT_KEEP_STACK:-0}" != 1 ]; then
  trap 'bash local/down.sh >/dev/null 2>&1 || true' EXIT
fi
step "building the functions and the demo (Cargo.toml's local profile)"
# One cargo command for both: built apart, the two packages resolve their dependencies' features
# apart, and nearly every crate (the AWS SDK, tokio, hyper) was compiled twice.
cargo build --profile local -p perfagent-functions --bins -p perfagent-e2e --bin demo
step "local stack: emulator + infra/template.yaml deployed with those functions"
PERFAGENT_BIN_DIR="$CARGO_TARGET_DIR/local" bash local/up.sh
step "the demo"
"$CARGO_TARGET_DIR/local/demo"
step "done in $((SECONDS - started)) s"
