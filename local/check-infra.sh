#!/usr/bin/env bash
# Lints the infrastructure offline: cfn-lint (from .venv) and `sam validate --lint` (from .venv-sam,
# its own pinned cfn-lint) on infra/template.yaml. Part of `make test`; needs no emulator, no AWS.
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$PERFAGENT_ROOT"

mkdir -p "$LOCAL_LOGS"
ensure_venv
t=$(now)
# --include-checks I: informational findings fail the check too.
.venv/bin/cfn-lint --include-checks I -- infra/template.yaml
log "cfn-lint $(.venv/bin/cfn-lint --version | awk '{print $2}'): infra/template.yaml clean ($(elapsed "$t") s)"

ensure_sam_venv
t=$(now)
# Offline: --lint runs SAM's own cfn-lint on the transformed template; no credentials are used.
AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 \
  "$SAM_VENV/bin/sam" validate --lint --template infra/template.yaml >"$LOCAL_LOGS/sam-validate.log" 2>&1 ||
  {
    cat "$LOCAL_LOGS/sam-validate.log" >&2
    die "sam validate --lint found problems in infra/template.yaml"
  }
log "sam validate --lint: infra/template.yaml clean ($(elapsed "$t") s)"
