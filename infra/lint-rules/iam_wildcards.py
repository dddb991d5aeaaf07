"""cfn-lint rule E9101: least privilege in every IAM policy statement of the template.

Run by local/check-infra.sh as `cfn-lint --append-rules infra/lint-rules`; tested by
infra/lint_rules_test.py. SAM resources are checked after cfn-lint's SAM transform, so the roles a
function's `Policies` become are checked too.

An `Allow` statement fails when
- an action is a wildcard: `*`, or `service:*` (`NotAction` counts as one: it allows everything
  else), wherever it applies;
- its resource is `*` (or it uses `NotResource`) for an action that is not in RESOURCE_STAR_ALLOWED,
  the actions AWS offers no resource-level permission for.

`Deny` statements are not checked: a wide deny only takes permissions away.
"""

from cfnlint.rules import CloudFormationLintRule, RuleMatch

# Actions that accept no resource narrower than "*" (the Service Authorization Reference lists no
# resource type for them), so `Resource: "*"` is the only way to grant them. Lower case: IAM action
# names are case-insensitive. Add an action here only with the reason it needs "*".
RESOURCE_STAR_ALLOWED = {
    # A task token is not a resource: resuming the approval task (the API's approve and reject).
    "states:sendtasksuccess",
    "states:sendtaskfailure",
    "states:sendtaskheartbeat",
    # Step Functions' log delivery to CloudWatch Logs goes through these account-level actions
    # (the policy AWS documents for a state machine's logging role).
    "logs:createlogdelivery",
    "logs:getlogdelivery",
    "logs:updatelogdelivery",
    "logs:deletelogdelivery",
    "logs:listlogdeliveries",
    "logs:putresourcepolicy",
    "logs:describeresourcepolicies",
    "logs:describeloggroups",
    # X-Ray tracing, should a function turn it on (the AWSXRayDaemonWriteAccess actions).
    "xray:puttracesegments",
    "xray:puttelemetryrecords",
}


def _branches(value):
    """The values an intrinsic `Fn::If` may take (both branches), or the value itself."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::If" in value:
        args = value["Fn::If"]
        if isinstance(args, list) and len(args) == 3:
            return _branches(args[1]) + _branches(args[2])
        return []
    return [value]


def _strings(value):
    """A string-or-list field's literal strings (intrinsics such as !Ref or !GetAtt are skipped:
    they name one resource, never a wildcard)."""
    out = []
    for branch in _branches(value):
        items = branch if isinstance(branch, list) else [branch]
        for item in items:
            for leaf in _branches(item):
                if isinstance(leaf, str):
                    out.append(leaf)
    return out


def _is_wildcard_action(action):
    return action == "*" or action.endswith(":*")


class IamWildcards(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "No wildcard IAM actions, no Resource \"*\" except for actions that need it"
    description = (
        "Fails an Allow statement with Action '*' or 'service:*' (or NotAction), and one on "
        "Resource '*' (or NotResource) for an action that supports resource-level permissions."
    )
    source_url = "https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html"
    tags = ["resources", "iam", "security"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.get_resources().items():
            properties = resource.get("Properties") if isinstance(resource, dict) else None
            if isinstance(properties, dict):
                self._walk(properties, ["Resources", name, "Properties"], matches)
        return matches

    def _walk(self, node, path, matches):
        """Finds every policy document (a mapping with `Statement`) under a resource's properties."""
        if isinstance(node, dict):
            statements = node.get("Statement")
            if statements is not None:
                self._check_document(statements, path + ["Statement"], matches)
            for key, value in node.items():
                if key != "Statement":
                    self._walk(value, path + [key], matches)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self._walk(value, path + [i], matches)

    def _check_document(self, statements, path, matches):
        items = statements if isinstance(statements, list) else [statements]
        for i, item in enumerate(items):
            item_path = path + [i] if isinstance(statements, list) else path
            for statement in _branches(item):
                if isinstance(statement, dict):
                    self._check_statement(statement, item_path, matches)

    def _check_statement(self, statement, path, matches):
        if statement.get("Effect") != "Allow":
            return
        if "NotAction" in statement:
            matches.append(
                RuleMatch(path + ["NotAction"], "Allow with NotAction grants every other action: list the actions")
            )
        actions = _strings(statement.get("Action"))
        for action in actions:
            if _is_wildcard_action(action):
                matches.append(
                    RuleMatch(path + ["Action"], f"Action {action!r} is a wildcard: list the actions the role needs")
                )
        everything = "NotResource" in statement or "*" in _strings(statement.get("Resource"))
        if not everything:
            return
        for action in actions:
            if not _is_wildcard_action(action) and action.lower() not in RESOURCE_STAR_ALLOWED:
                matches.append(
                    RuleMatch(
                        path + ["Resource"],
                        f"{action} on Resource \"*\": name the resources (only actions without "
                        "resource-level permissions may use \"*\", see RESOURCE_STAR_ALLOWED)",
                    )
                )
