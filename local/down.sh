#!/usr/bin/env bash
# Stops what the local stack started: every process with a pid file in .local/ (the simulators,
# then MiniStack with the Lambda bootstraps it spawned). Idempotent: a missing, stale or foreign pid
# file is removed without signalling anything. The emulator keeps its state in memory, so the
# deployed stack goes with it; the next local/up.sh deploys afresh.
#
# Convention for other local processes: write `.local/<name>.pid`; this script stops the process
# (its process group when it leads one) if its command line mentions <name>, this repository or
# CARGO_TARGET_DIR, which keeps a recycled pid from being signalled.
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"

stopped=0
stop_pid_file() {
  local file=$1 name pid
  name=$(basename "$file" .pid)
  if pid=$(pid_of_ours "$file" "${name%%-*}") ||
    pid=$(pid_of_ours "$file" "$PERFAGENT_ROOT") ||
    pid=$(pid_of_ours "$file" "$CARGO_TARGET_DIR"); then
    stop_group "$pid" "$name"
    stopped=$((stopped + 1))
  else
    log "$name was not running (removing its stale pid file)"
  fi
  rm -f "$file"
}

shopt -s nullglob
# The simulators first, then the emulators (ministack-<port>.pid) they may be talking to.
for file in "$LOCAL_STATE"/*.pid; do
  case "$(basename "$file")" in ministack-*) ;; *) stop_pid_file "$file" ;; esac
done
for file in "$LOCAL_STATE"/ministack-*.pid; do
  stop_pid_file "$file"
done

rm -f "$STACK_ENV" "$STACK_JSON"
if [ "$stopped" = 0 ]; then
  log "nothing was running"
fi
if port_in_use; then
  log "note: port $EMULATOR_PORT is still in use by a process local/up.sh did not start"
fi
