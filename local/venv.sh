#!/usr/bin/env bash
# Creates ./.venv from local/requirements.txt, every transitive version pinned by local/requirements.lock
# (regenerate it with `.venv/bin/pip freeze > local/requirements.lock`); re-installs only when either changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
req="$root/local/requirements.txt"
lock="$root/local/requirements.lock"
stamp="$venv/.requirements.sha256"
want=$(cat "$req" "$lock" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v python3 >/dev/null || { echo "venv.sh: python3 is required (3.10+)" >&2; exit 1; }
echo "==> installing pinned Python tools into .venv (first time only)" >&2
python3 -m venv "$venv"
# The lock pins every transitive package; requirements.txt names what we asked for.
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" -c "$lock"
echo "$want" > "$stamp"
