#!/usr/bin/env bash
# The pinned AWS SAM CLI (./.venv-sam), for deploying to AWS. Runs `sam ARGS...` in the current
# directory, with cargo-lambda and zig on PATH for `sam build` (installed the first time it is needed).
#   cd infra && ../local/sam.sh build && ../local/sam.sh deploy --guided
# It uses your AWS credentials as they are (profile, SSO, environment): it never points at the emulator.
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"
ensure_sam_venv
if [ "${1:-}" = build ] && [ ! -x "$SAM_VENV/bin/cargo-lambda" ]; then
  log "installing the pinned cargo-lambda and zig into .venv-sam (first sam build only)"
  "$SAM_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$PERFAGENT_ROOT/local/requirements-cargo-lambda.txt"
fi
export PATH="$SAM_VENV/bin:$PATH" SAM_CLI_TELEMETRY="${SAM_CLI_TELEMETRY:-0}"
exec "$SAM_VENV/bin/sam" "$@"
