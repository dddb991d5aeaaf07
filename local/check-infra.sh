#!/usr/bin/env bash
# Lints the infrastructure offline: cfn-lint (from .venv) with the project's own rules
# (infra/lint-rules, tested first), checkov (from .venv-checkov) and `sam validate --lint` (from
# .venv-sam, its own pinned cfn-lint) on infra/template.yaml. Part of `make test`; needs no
# emulator, no AWS, no network.
set -euo pipefail
# shellcheck source=local/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$PERFAGENT_ROOT"
# The rules are imported from the source tree: leave no __pycache__ in it.
export PYTHONDONTWRITEBYTECODE=1

mkdir -p "$LOCAL_LOGS"
ensure_venv
t=$(now)
# The project's rules must catch what they are for before they are trusted with the template.
.venv/bin/python infra/lint_rules_test.py >"$LOCAL_LOGS/lint-rules-test.log" 2>&1 ||
  {
    cat "$LOCAL_LOGS/lint-rules-test.log" >&2
    die "the cfn-lint rules' tests (infra/lint_rules_test.py) failed"
  }
log "cfn-lint rules: $(grep -Eo '^Ran [0-9]+ tests?' "$LOCAL_LOGS/lint-rules-test.log" | cut -d' ' -f2) tests passed ($(elapsed "$t") s)"

t=$(now)
# --include-checks I: informational findings fail the check too. --append-rules: E9101, no wildcard
# IAM actions and no Resource "*" but for actions that have no resource-level permission.
.venv/bin/cfn-lint --include-checks I --append-rules infra/lint-rules -- infra/template.yaml
log "cfn-lint $(.venv/bin/cfn-lint --version | awk '{print $2}') + infra/lint-rules: infra/template.yaml clean ($(elapsed "$t") s)"

ensure_checkov_venv
t=$(now)
# Fails on any failed check; the skipped ones are listed with their reasons in infra/checkov.yaml.
"$CHECKOV_VENV/bin/checkov" --config-file infra/checkov.yaml --file infra/template.yaml \
  >"$LOCAL_LOGS/checkov.log" 2>&1 ||
  {
    cat "$LOCAL_LOGS/checkov.log" >&2
    die "checkov found problems in infra/template.yaml (skips, with reasons: infra/checkov.yaml)"
  }
log "checkov $("$CHECKOV_VENV/bin/checkov" --version): infra/template.yaml clean, $(grep -Eo 'Passed checks: [0-9]+' "$LOCAL_LOGS/checkov.log" | awk '{print $3}') checks passed ($(elapsed "$t") s)"

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
