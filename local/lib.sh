# Shell helpers shared by the local-stack scripts (up.sh, deploy.sh, down.sh, check-infra.sh, sam.sh).
# Source it; it defines names and functions only and changes nothing by itself.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the names below are used by the scripts that source this file

PERFAGENT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Runtime state of the local stack: pid files, logs, build staging, stack outputs. Git-ignored.
LOCAL_STATE="$PERFAGENT_ROOT/.local"
LOCAL_LOGS="$LOCAL_STATE/logs"
STACK_ENV="$LOCAL_STATE/stack.env"
STACK_JSON="$LOCAL_STATE/stack.json"

STACK_NAME="${PERFAGENT_STACK_NAME:-perfagent-local}"
EMULATOR_PORT="${PERFAGENT_EMULATOR_PORT:-4566}"
# One pid file per port: an emulator started on another port is another emulator.
EMULATOR_PID_FILE="$LOCAL_STATE/ministack-$EMULATOR_PORT.pid"
EMULATOR_URL="http://127.0.0.1:$EMULATOR_PORT"
# The account MiniStack is started with; ARNs built for another account are refused by it.
LOCAL_ACCOUNT_ID=123456789012
LOCAL_REGION=us-east-1
# The simulated orchestrator the local stack's workflow calls (tests and the demo start it there),
# the secret both sides sign with (local only), and the IAM user whose signature approves.
LOCAL_ORCHESTRATOR_PORT="${PERFAGENT_ORCHESTRATOR_PORT:-9200}"
LOCAL_ORCHESTRATOR_URL="http://127.0.0.1:$LOCAL_ORCHESTRATOR_PORT"
LOCAL_ORCHESTRATOR_SECRET=perfagent-local-orchestrator-secret
LOCAL_APPROVER_ARN="arn:aws:iam::$LOCAL_ACCOUNT_ID:user/perfagent-approver"
# Bucket that `aws cloudformation package` uploads the function zips to, inside the emulator.
ARTIFACT_BUCKET="${STACK_NAME}-artifacts"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/perfagent-target}"

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# require_cmd NAME HINT: fail early, with what to install, when a tool is missing.
require_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed: $2"
}

# Seconds since the epoch with two decimals, for the timings the scripts print.
now() { date +%s.%N; }
elapsed() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'; }

# The project's Python tools (.venv): MiniStack, awscli, cfn-lint.
ensure_venv() {
  require_cmd python3 "install CPython 3.10+ (Debian: apt-get install python3 python3-venv)"
  bash "$PERFAGENT_ROOT/local/venv.sh"
}

# ensure_tool_venv DIR NAME SECONDS: a tool whose pins conflict with MiniStack's gets its own
# virtualenv ./.venv-NAME, made from local/requirements-NAME.txt with every transitive version pinned
# by local/requirements-NAME.lock (regenerate it with `DIR/bin/pip freeze`); re-made only when
# either file changes. SECONDS is what the first install takes, for the message.
ensure_tool_venv() {
  local dir=$1 name=$2 seconds=$3
  local req="$PERFAGENT_ROOT/local/requirements-$name.txt" lock="$PERFAGENT_ROOT/local/requirements-$name.lock"
  local stamp="$dir/.requirements.sha256" want
  want=$(cat "$req" "$lock" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  require_cmd python3 "install CPython 3.10+ (Debian: apt-get install python3 python3-venv)"
  log "installing the pinned $name tools into ${dir#"$PERFAGENT_ROOT/"} (first time only, ~$seconds s)"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req" -c "$lock"
  echo "$want" >"$stamp"
}

# SAM CLI lives in its own virtualenv (.venv-sam): its pins conflict with MiniStack's.
SAM_VENV="$PERFAGENT_ROOT/.venv-sam"
ensure_sam_venv() { ensure_tool_venv "$SAM_VENV" sam 50; }

# checkov too (.venv-checkov): it pins boto3==1.35.49, networkx<2.7 and packaging<24.
CHECKOV_VENV="$PERFAGENT_ROOT/.venv-checkov"
ensure_checkov_venv() { ensure_tool_venv "$CHECKOV_VENV" checkov 65; }

# Every AWS call of these scripts goes to the emulator with the fixed test identity (the emulator's
# root), whatever the caller's shell holds: a real profile must never be used by accident.
use_emulator_env() {
  unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  export AWS_REGION="$LOCAL_REGION" AWS_DEFAULT_REGION="$LOCAL_REGION"
  export AWS_ENDPOINT_URL="$EMULATOR_URL" AWS_EC2_METADATA_DISABLED=true
}

# True when something answers the LocalStack-compatible health endpoint.
emulator_healthy() {
  curl -sf --max-time 2 "$EMULATOR_URL/_localstack/health" >/dev/null 2>&1
}

# True when something accepts TCP connections on the emulator port (ours or not).
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$EMULATOR_PORT") 2>/dev/null
}

# pid_of_ours FILE PATTERN: prints the pid recorded in FILE when that process is alive and its
# command line matches PATTERN (a recycled pid must never be signalled).
pid_of_ours() {
  local file=$1 pattern=$2 pid
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
  echo "$pid"
}

# stop_group PID NAME: ends the process group led by PID (the server and what it spawned, such as
# MiniStack's Lambda bootstrap processes), politely first.
stop_group() {
  local pid=$1 name=$2
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || {
      log "stopped $name (pid $pid)"
      return 0
    }
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  log "killed $name (pid $pid): it did not stop within 5 s"
}
