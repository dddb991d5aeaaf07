#!/usr/bin/env python3
"""Creates a DynamoDB table with exactly the key schema, attributes and index of the `Table` resource of
infra/template.yaml (read from the template, not copied), for the collector benchmark (local/bench.sh).
TTL is enabled on the template's attribute as local/deploy_stack.py does after a deploy.

Usage: .venv/bin/python local/bench/create_table.py TABLE_NAME
The endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL, ...).
"""
import os
import sys

import boto3

sys.dont_write_bytecode = True  # no __pycache__ left in local/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from deploy_stack import load_template  # noqa: E402 (local/ is not a package)

# CreateTable's arguments among the resource's properties (the others are set by later calls).
CREATE_KEYS = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    template = load_template(os.path.join(root, "infra", "template.yaml"))
    props = template["Resources"]["Table"]["Properties"]
    client = boto3.client("dynamodb")
    args = {k: props[k] for k in CREATE_KEYS if k in props}
    client.create_table(TableName=sys.argv[1], **args)
    client.get_waiter("table_exists").wait(
        TableName=sys.argv[1], WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(
            TableName=sys.argv[1],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    print(f"table {sys.argv[1]}: {', '.join(k['AttributeName'] for k in props['KeySchema'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
