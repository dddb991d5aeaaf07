#!/usr/bin/env bash
# Validates the state machine definition with asl-validator (pinned in package-lock.json).
#
# optimization.asl.json is a template: its ${...} placeholders are filled by the stack's
# DefinitionSubstitutions, and the numeric ones (TimeoutSeconds, Seconds) are unquoted, so the
# file is JSON only once substituted. This script substitutes the same way CloudFormation and
# MiniStack do (plain text replacement of ${Name}) with representative values, checks that no
# placeholder is left, then validates the rendered definition (ARNs included).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [[ ! -x node_modules/.bin/asl-validator ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

rendered="$(mktemp --suffix=.asl.json)"
trap 'rm -f "$rendered"' EXIT

node - "$here/optimization.asl.json" "$rendered" <<'JS'
const fs = require("fs");
const [src, dst] = process.argv.slice(2);
const substitutions = {
  WorkflowStageFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:perfagent-workflow-stage",
  ApprovalTimeoutSeconds: "86400",
  BakeIntervalSeconds: "60",
};
let text = fs.readFileSync(src, "utf8");
for (const [name, value] of Object.entries(substitutions)) {
  text = text.split("${" + name + "}").join(value);
}
const left = text.match(/\$\{[^}]*\}/g);
if (left) {
  console.error(`unknown placeholders: ${[...new Set(left)].join(", ")}`);
  process.exit(1);
}
JSON.parse(text); // a clear error if the rendered text is not JSON
fs.writeFileSync(dst, text);
JS

node_modules/.bin/asl-validator --json-path "$rendered"
echo "statemachine/optimization.asl.json: valid"
