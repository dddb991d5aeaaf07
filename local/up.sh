#!/usr/bin/env bash
# Brings the local stack up, or updates it when it is already up (idempotent):
#   1. the project's Python tools (.venv),
#   2. MiniStack 1.5.33 on 127.0.0.1:4566 (unless it already runs, started by this script),
#   3. local/deploy.sh: builds the functions, deploys infra/template.yaml as stack perfagent-local,
#      enables TTL and writes the outputs to .local/stack.env and .local/stack.json.
#
# Environment:
#   PERFAGENT_EXTERNAL_EMULATOR=1  deploy into whatever LocalStack-compatible emulator already answers
#                                  on the port (LocalStack itself, or a MiniStack you started)
#   PERFAGENT_EMULATOR_AUTH=0      start MiniStack without IAM enforcement (default 1: AUTH=true, so the
#                                  functions' roles and SigV4 signatures are really checked)
#   PERFAGENT_EMULATOR_PORT        default 4566
#   and those of local/deploy.sh (profile, parameter overrides).
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"

started=$(now)
mkdir -p "$LOCAL_LOGS" "$LOCAL_STATE/tmp"
require_cmd curl "apt-get install curl"

t=$(now)
ensure_venv
log "python tools ready (.venv) in $(elapsed "$t") s"

start_ministack() {
  local auth=true
  [ "${PERFAGENT_EMULATOR_AUTH:-1}" = 0 ] && auth=false
  log "starting MiniStack on $EMULATOR_URL, AUTH=$auth (log: .local/logs/ministack.log)"
  # A clean environment: MiniStack hands its own environment to every Lambda bootstrap it spawns,
  # so nothing of the caller's shell (a real AWS profile, RUST_LOG...) must leak into the functions.
  # AWS_ENDPOINT_URL is what makes the functions' SDK clients call back into the emulator.
  # AUTH=true: every call is evaluated against IAM (a function's calls against its execution role,
  # API Gateway's AWS_IAM routes against a valid signature); test/test is the root identity.
  # setsid: MiniStack leads its own process group, so down.sh ends it with its bootstrap children.
  env -i \
    PATH="$PATH" HOME="$HOME" LANG=C.UTF-8 \
    TMPDIR="$LOCAL_STATE/tmp" \
    GATEWAY_PORT="$EMULATOR_PORT" BIND_HOST=127.0.0.1 \
    MINISTACK_ACCOUNT_ID="$LOCAL_ACCOUNT_ID" MINISTACK_REGION="$LOCAL_REGION" \
    SFN_WAIT_SCALE=0.01 \
    AUTH="$auth" \
    AWS_ENDPOINT_URL="$EMULATOR_URL" \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION="$LOCAL_REGION" AWS_DEFAULT_REGION="$LOCAL_REGION" \
    AWS_EC2_METADATA_DISABLED=true \
    setsid "$PERFAGENT_ROOT/.venv/bin/ministack" >>"$LOCAL_LOGS/ministack.log" 2>&1 </dev/null &
  echo $! >"$EMULATOR_PID_FILE"
  for _ in $(seq 1 300); do
    # Healthy only if ours answers: another emulator on the port would answer too.
    if kill -0 "$(cat "$EMULATOR_PID_FILE")" 2>/dev/null && emulator_healthy; then
      sleep 0.2
      kill -0 "$(cat "$EMULATOR_PID_FILE")" 2>/dev/null && return 0
    fi
    if ! kill -0 "$(cat "$EMULATOR_PID_FILE")" 2>/dev/null; then
      rm -f "$EMULATOR_PID_FILE"
      tail -n 20 "$LOCAL_LOGS/ministack.log" >&2 || true
      die "MiniStack exited at start (see .local/logs/ministack.log above)"
    fi
    sleep 0.1
  done
  die "MiniStack did not answer $EMULATOR_URL/_localstack/health within 30 s (see .local/logs/ministack.log)"
}

# wait_healthy TENTHS: polls the health endpoint for up to TENTHS tenths of a second.
wait_healthy() {
  for _ in $(seq 1 "$1"); do
    emulator_healthy && return 0
    sleep 0.1
  done
  return 1
}

t=$(now)
if pid=$(pid_of_ours "$EMULATOR_PID_FILE" ministack); then
  if wait_healthy 50; then
    log "MiniStack already running (pid $pid): updating the stack"
  else
    log "MiniStack (pid $pid) does not answer its health check: restarting it"
    stop_group "$pid" ministack
    rm -f "$EMULATOR_PID_FILE"
    start_ministack
    log "MiniStack healthy in $(elapsed "$t") s (pid $(cat "$EMULATOR_PID_FILE"))"
  fi
elif [ "${PERFAGENT_EXTERNAL_EMULATOR:-0}" = 1 ]; then
  emulator_healthy || die "PERFAGENT_EXTERNAL_EMULATOR=1 but nothing answers $EMULATOR_URL/_localstack/health"
  log "using the emulator already answering on $EMULATOR_URL (not started by up.sh)"
elif port_in_use; then
  die "port $EMULATOR_PORT is taken by a process up.sh did not start. Stop it, or deploy into it \
with PERFAGENT_EXTERNAL_EMULATOR=1 if it is LocalStack or MiniStack, or pick another port with \
PERFAGENT_EMULATOR_PORT. ($(ss -ltnp "sport = :$EMULATOR_PORT" 2>/dev/null | awk 'NR==2 {print $NF}'))"
else
  rm -f "$EMULATOR_PID_FILE" # a stale file from a stopped or crashed run, if any
  start_ministack
  log "MiniStack healthy in $(elapsed "$t") s (pid $(cat "$EMULATOR_PID_FILE"))"
fi

bash "$PERFAGENT_ROOT/local/deploy.sh"
log "local stack up in $(elapsed "$started") s; outputs in .local/stack.env"
