#!/usr/bin/env bash
# Builds the Lambda functions for this host and deploys infra/template.yaml into the running
# emulator through the real CloudFormation path (SAM transform included), as stack perfagent-local
# (local/deploy_stack.py: stage like `sam build`, package, change set). Then enables TTL on the
# table and writes the stack outputs to .local/stack.env (shell) and .local/stack.json (programs).
# local/up.sh calls it; run it alone to redeploy after an edit (the emulator must be up).
#
# Environment:
#   PERFAGENT_BUILD_PROFILE=local|release|dev  cargo profile of the functions (default local:
#                                        release's optimizations, faster to build; see Cargo.toml)
#   PERFAGENT_BIN_DIR=DIR                skip the build and deploy DIR/<binary> (e.g. prebuilt ones)
#   PERFAGENT_PARAMETERS="K=V K=V"       extra template parameter overrides (they win)
#   PERFAGENT_STACK_NAME                 default perfagent-local
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"
use_emulator_env

emulator_healthy || die "no emulator answers $EMULATOR_URL: start the stack with local/up.sh"
[ -x "$PERFAGENT_ROOT/.venv/bin/python" ] || die "no .venv: run bash local/venv.sh"
template="$PERFAGENT_ROOT/infra/template.yaml"
build_dir="$LOCAL_STATE/build"

# ---------------------------------------------------------------- build
t=$(now)
if [ -n "${PERFAGENT_BIN_DIR:-}" ]; then
  bin_dir=$PERFAGENT_BIN_DIR
  log "deploying prebuilt binaries from $bin_dir"
else
  require_cmd cargo "install the Rust toolchain (rustup)"
  case "${PERFAGENT_BUILD_PROFILE:-local}" in
    local) profile_flags=(--profile local) bin_dir="$CARGO_TARGET_DIR/local" ;;
    release) profile_flags=(--release) bin_dir="$CARGO_TARGET_DIR/release" ;;
    dev) profile_flags=() bin_dir="$CARGO_TARGET_DIR/debug" ;;
    *) die "PERFAGENT_BUILD_PROFILE must be local, release or dev" ;;
  esac
  # MiniStack runs a provided.al2023 bootstrap as a host process, so a plain host build is what it
  # needs (AWS gets a cross-built one from `sam build`, see docs/deploy.md).
  log "building perfagent-functions (${PERFAGENT_BUILD_PROFILE:-local} profile, host target, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  (cd "$PERFAGENT_ROOT" && cargo build "${profile_flags[@]}" -p perfagent-functions --bins)
  log "functions built in $(elapsed "$t") s"
fi

# ---------------------------------------------------------------- stage, package, deploy
case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die "unsupported host architecture $(uname -m)" ;;
esac
# Local differences are parameters, never template branches: the host's architecture, and the
# simulated fleet listens on loopback, which the scrapers refuse unless it is an allowed network.
# The workflow talks to the simulated orchestrator (local/sim, started by the tests and the demo)
# with a local-only secret; its approvals are signed by a local IAM user that is the approver.
# A short approval timeout lets a test see a workflow expire.
params=(--param "Architecture=$arch" --param "AllowedNetworks=127.0.0.0/8"
  --param "OrchestratorUrl=$LOCAL_ORCHESTRATOR_URL"
  --param "OrchestratorSecret=$LOCAL_ORCHESTRATOR_SECRET"
  --param "ApproverPrincipals=$LOCAL_APPROVER_ARN"
  --param "ApprovalTimeoutSeconds=20")
for kv in ${PERFAGENT_PARAMETERS:-}; do
  params+=(--param "$kv")
done

"$PERFAGENT_ROOT/.venv/bin/python" "$PERFAGENT_ROOT/local/deploy_stack.py" \
  --template "$template" --bin-dir "$bin_dir" --build-dir "$build_dir" \
  --state-dir "$LOCAL_STATE" --stack "$STACK_NAME" --bucket "$ARTIFACT_BUCKET" \
  --account "$LOCAL_ACCOUNT_ID" "${params[@]}" ||
  die "deploy of $STACK_NAME failed (emulator log: .local/logs/ministack.log)"
