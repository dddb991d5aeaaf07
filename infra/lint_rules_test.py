"""Tests of the project's cfn-lint rules (infra/lint-rules/), run by local/check-infra.sh:
    .venv/bin/python infra/lint_rules_test.py
Each case lints a tiny template with the rules appended, through cfn-lint's own API, and looks at
the rule's matches only."""

import os
import unittest

from cfnlint.api import lint
from cfnlint.config import ManualArgs

RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lint-rules")
RULE = "E9101"


def role(statement):
    """A template with one role whose inline policy is `statement` (YAML, indented 18 spaces)."""
    return f"""
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
      KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {{Service: lambda.amazonaws.com}}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: p
          PolicyDocument:
            Version: "2012-10-17"
            Statement:
{statement}
"""


def findings(template):
    matches = lint(template, config=ManualArgs(append_rules=[RULES], regions=["us-east-1"]))
    return [m.message for m in matches if m.rule.id == RULE]


class IamWildcardsTest(unittest.TestCase):
    def test_star_action_on_star_resource_fails(self):
        found = findings(role('              - {Effect: Allow, Action: "*", Resource: "*"}'))
        self.assertEqual(len(found), 1, found)
        self.assertIn("'*' is a wildcard", found[0])

    def test_service_wildcard_fails_even_on_a_named_resource(self):
        found = findings(role('              - {Effect: Allow, Action: "dynamodb:*", Resource: !GetAtt Table.Arn}'))
        self.assertEqual(len(found), 1, found)
        self.assertIn("'dynamodb:*' is a wildcard", found[0])

    def test_a_resource_scoped_action_on_star_fails(self):
        found = findings(
            role('              - {Effect: Allow, Action: [dynamodb:GetItem, states:SendTaskSuccess], Resource: "*"}')
        )
        self.assertEqual(len(found), 1, found)
        self.assertIn('dynamodb:GetItem on Resource "*"', found[0])

    def test_not_action_and_not_resource_count_as_wildcards(self):
        found = findings(role('              - {Effect: Allow, NotAction: "iam:*", Resource: "*"}'))
        self.assertTrue(any("NotAction" in f for f in found), found)
        found = findings(role('              - {Effect: Allow, Action: dynamodb:GetItem, NotResource: !GetAtt Table.Arn}'))
        self.assertEqual(len(found), 1, found)

    def test_a_wildcard_hidden_in_a_condition_branch_fails(self):
        template = role(
            '              - !If [Never, {Effect: Allow, Action: "s3:*", Resource: "*"}, !Ref AWS::NoValue]'
        ).replace("Resources:", 'Conditions:\n  Never: !Equals ["a", "b"]\nResources:', 1)
        found = findings(template)
        self.assertEqual(len(found), 1, found)

    def test_actions_without_resource_level_permissions_may_use_star(self):
        statement = (
            "              - Effect: Allow\n"
            "                Action: [states:SendTaskSuccess, states:SendTaskFailure, logs:CreateLogDelivery,\n"
            "                         logs:GetLogDelivery, logs:UpdateLogDelivery, logs:DeleteLogDelivery,\n"
            "                         logs:ListLogDeliveries, logs:PutResourcePolicy,\n"
            "                         logs:DescribeResourcePolicies, logs:DescribeLogGroups]\n"
            '                Resource: "*"'
        )
        self.assertEqual(findings(role(statement)), [])

    def test_named_actions_on_named_resources_and_wide_denies_pass(self):
        statement = (
            "              - {Effect: Allow, Action: [dynamodb:GetItem, dynamodb:Query], Resource: !GetAtt Table.Arn}\n"
            '              - {Effect: Deny, Action: "*", Resource: "*"}'
        )
        self.assertEqual(findings(role(statement)), [])

    def test_sam_function_policies_are_checked_after_the_transform(self):
        template = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2023
      Handler: bootstrap
      CodeUri: s3://bucket/key.zip
      Policies:
        - Statement:
            - {Effect: Allow, Action: "lambda:*", Resource: "*"}
"""
        found = findings(template)
        self.assertEqual(len(found), 1, found)
        self.assertIn("'lambda:*' is a wildcard", found[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
