"""Deploys infra/template.yaml into a LocalStack-compatible emulator, the way `sam build` +
`sam deploy` would, in one process.

1. Stage: for every AWS::Serverless::Function, the binary named by its
   Metadata.BuildProperties.Binary becomes BUILD_DIR/<LogicalId>/bootstrap (what `sam build` makes).
2. Package: each bootstrap is zipped reproducibly and uploaded to the artifact bucket under its
   content hash, and the function's CodeUri points at it (what `aws cloudformation package` does);
   each state machine's DefinitionUri file likewise.
3. Deploy: the template goes to S3 and through a CloudFormation change set (CREATE or UPDATE),
   executed and waited for (what `aws cloudformation deploy` does: same API calls, polled every
   0.2 s instead of every 5 s, which is most of a local deploy's time).
   ApiBaseUrl (the approve/reject links' base) is set to the API's local URL, which needs the API's
   id: on the first deploy, by an update right after it.
4. After: TTL on the table (the emulator ignores TimeToLiveSpecification), and the outputs written
   to STATE_DIR/stack.json and STATE_DIR/stack.env.

The endpoint, region and credentials come from the environment (AWS_ENDPOINT_URL, ...): local/lib.sh
sets them. Usage: see `--help`.
"""

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import time
import zipfile

import boto3
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

POLL_SECONDS = 0.2
TIMEOUT_SECONDS = 300
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
# CloudFormation's answers to a change set that would change nothing.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "no changes")


class DeployError(Exception):
    pass


class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form intrinsics (!Sub, !Ref, !GetAtt, ...) into their JSON
    forms. (cfn-lint's decoder does the same but takes seconds to import.)"""


def _intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag in ("Ref", "Condition"):
        return {tag: value}
    if tag == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag}": value}


TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=TemplateLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(template, dict) or "Resources" not in template:
        raise DeployError(f"{path} is not a CloudFormation template")
    return template


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def stage(template: dict, bin_dir: str, build_dir: str) -> dict:
    """Copies each function's binary to BUILD_DIR/<LogicalId>/bootstrap and points its CodeUri
    there; returns {LogicalId: path}."""
    staged, missing = {}, []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            raise DeployError(f"{logical_id} has no Metadata.BuildProperties.Binary")
        source = os.path.join(bin_dir, binary)
        if not os.path.isfile(source):
            missing.append(f"{logical_id} needs {source}")
            continue
        os.makedirs(os.path.join(build_dir, logical_id), exist_ok=True)
        target = os.path.join(build_dir, logical_id, "bootstrap")
        shutil.copyfile(source, target)
        os.chmod(target, 0o755)
        resource.setdefault("Properties", {})["CodeUri"] = os.path.dirname(target)
        staged[logical_id] = target
    if missing:
        raise DeployError("binaries not built:\n  " + "\n  ".join(missing))
    return staged


def zip_bootstrap(path: str) -> bytes:
    """A zip that depends only on the binary's bytes, so an unchanged binary keeps its S3 key and
    CloudFormation sees no change to the function."""
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 << 16)  # a regular, executable file
    info.compress_type = zipfile.ZIP_DEFLATED
    buf = io.BytesIO()
    # Level 1: a 14 MB binary zips in 0.35 s instead of 1.2 s (level 6), 10 % larger; a local
    # upload does not care about size.
    with zipfile.ZipFile(buf, "w") as z, open(path, "rb") as f:
        z.writestr(info, f.read(), compresslevel=1)
    return buf.getvalue()


def upload_if_absent(s3, bucket: str, key: str, body: bytes) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return False
    except ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        return True


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)


def package(s3, template: dict, staged: dict, bucket: str) -> None:
    for logical_id, path in staged.items():
        body = zip_bootstrap(path)
        key = f"functions/{logical_id}/{hashlib.sha256(body).hexdigest()}.zip"
        if upload_if_absent(s3, bucket, key, body):
            log(f"uploaded {logical_id} ({len(body) // 1024} KiB zipped)")
        template["Resources"][logical_id]["Properties"]["CodeUri"] = {"Bucket": bucket, "Key": key}


def package_definitions(s3, template: dict, template_dir: str, bucket: str) -> None:
    """Uploads each AWS::Serverless::StateMachine's local DefinitionUri file under its content
    hash and points DefinitionUri at it (what `sam package` does). The file is not JSON before
    CloudFormation substitutes its DefinitionSubstitutions, so it is uploaded as is."""
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = resource.setdefault("Properties", {})
        uri = props.get("DefinitionUri")
        if not isinstance(uri, str):
            continue
        with open(os.path.join(template_dir, uri), "rb") as f:
            body = f.read()
        key = f"statemachines/{logical_id}/{hashlib.sha256(body).hexdigest()}.json"
        if upload_if_absent(s3, bucket, key, body):
            log(f"uploaded {logical_id}'s definition ({uri})")
        props["DefinitionUri"] = {"Bucket": bucket, "Key": key}


def api_base_url(endpoint: str, api_id: str) -> str:
    """The URL of an HTTP API's $default stage in the emulator, the only one a client resolves
    (the ApiEndpoint output's *.execute-api.localhost host name does not resolve)."""
    return f"{endpoint}/_aws/execute-api/{api_id}/$default"


def existing_api_id(cfn, stack: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError:
        return None
    if not stacks or stacks[0].get("StackStatus", "").startswith(("ROLLBACK", "DELETE")):
        return None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return outputs.get("ApiId")


def stack_status(cfn, stack: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError as e:
        if "does not exist" in str(e):
            return None
        raise


def wait_for(what: str, poll, done) -> str:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        state = poll()
        if done(state):
            return state
        if time.monotonic() > deadline:
            raise DeployError(f"{what} still {state} after {TIMEOUT_SECONDS} s")
        time.sleep(POLL_SECONDS)


def failure_reasons(cfn, stack: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except ClientError:
        return ""
    return "\n".join(
        f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if "FAILED" in e.get("ResourceStatus", "")
    )


def deploy(cfn, stack: str, template_url: str, parameters: dict) -> bool:
    """Runs one change set; returns False when there was nothing to change."""
    status = stack_status(cfn, stack)
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "CREATE_FAILED"):
        # A stack whose creation failed can only be deleted; locally that is always safe.
        log(f"stack {stack} is {status}: deleting it first")
        cfn.delete_stack(StackName=stack)
        wait_for("delete", lambda: stack_status(cfn, stack), lambda s: s in (None, "DELETE_COMPLETE"))
        status = None
    change_set_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS", "DELETE_COMPLETE") else "UPDATE"
    name = f"deploy-{int(time.time() * 1000)}"
    change_set = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=change_set_type,
        TemplateURL=template_url,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=CAPABILITIES,
    )["Id"]

    def change_set_state():
        d = cfn.describe_change_set(ChangeSetName=change_set, StackName=stack)
        return d["Status"], d.get("StatusReason", "")

    state, reason = wait_for(
        "change set", change_set_state, lambda s: s[0] in ("CREATE_COMPLETE", "FAILED", "DELETE_COMPLETE")
    )
    if state != "CREATE_COMPLETE":
        if any(marker in reason for marker in NO_CHANGES):
            cfn.delete_change_set(ChangeSetName=change_set, StackName=stack)
            return False
        raise DeployError(f"change set {state}: {reason}")
    cfn.execute_change_set(ChangeSetName=change_set, StackName=stack)
    final = wait_for(
        "stack", lambda: stack_status(cfn, stack), lambda s: s is not None and not s.endswith("_IN_PROGRESS")
    )
    if final not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(f"stack {stack} ended {final}:\n{failure_reasons(cfn, stack)}")
    return True


def ensure_approver(iam, arn: str, api_id: str, region: str, account: str) -> dict:
    """The local approver: an IAM user named by the ARN in ApproverPrincipals, allowed to call the
    API, with a fresh access key (its old ones deleted). Returns the key for stack.env; the
    simulated orchestrator signs its decisions with it, as a real approver's tooling would."""
    name = arn.rsplit("/", 1)[-1]
    try:
        iam.create_user(UserName=name)
        log(f"created IAM user {name} (the approver)")
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": f"arn:aws:execute-api:{region}:{account}:{api_id}/*",
            }
        ],
    }
    iam.put_user_policy(UserName=name, PolicyName="call-the-api", PolicyDocument=json.dumps(policy))
    for key in iam.list_access_keys(UserName=name).get("AccessKeyMetadata", []):
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"APPROVER_ACCESS_KEY_ID": key["AccessKeyId"], "APPROVER_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def stack_parameter(cfn, stack: str, key: str) -> str | None:
    params = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])
    return next((p.get("ParameterValue") for p in params if p["ParameterKey"] == key), None)


def template_declares(template: dict, parameter: str) -> bool:
    return parameter in template.get("Parameters", {})


def enable_ttl(ddb, table: str, attribute: str) -> None:
    current = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        ddb.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
        log(f"TTL enabled on {table} ({attribute})")


def ttl_attribute(template: dict) -> tuple[str, str] | None:
    for logical_id, resource in template.get("Resources", {}).items():
        spec = resource.get("Properties", {}).get("TimeToLiveSpecification")
        if resource.get("Type") == "AWS::DynamoDB::Table" and spec and spec.get("Enabled"):
            return logical_id, spec["AttributeName"]
    return None


def stack_values(cfn, stack: str, endpoint: str, region: str, account: str) -> dict:
    description = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    missing = [k for k in ("ApiId", "TableName", "CollectorFunctionName", "ApiFunctionName") if not outputs.get(k)]
    if missing:
        raise DeployError(f"the stack has no output {', '.join(missing)}")
    return {
        "STACK_NAME": stack,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ACCOUNT_ID": account,
        "API_ID": outputs["ApiId"],
        # The emulator serves an HTTP API under this path: the ApiEndpoint output's
        # *.execute-api.localhost host name does not resolve through the system resolver.
        "API_URL": api_base_url(endpoint, outputs["ApiId"]),
        "TABLE_NAME": outputs["TableName"],
        "COLLECTOR_FUNCTION_NAME": outputs["CollectorFunctionName"],
        "API_FUNCTION_NAME": outputs["ApiFunctionName"],
        "ANALYZER_FUNCTION_NAME": outputs.get("AnalyzerFunctionName", ""),
        "WORKFLOW_STAGE_FUNCTION_NAME": outputs.get("WorkflowStageFunctionName", ""),
        "STATE_MACHINE_ARN": outputs.get("StateMachineArn", ""),
    }


def write_outputs(state_dir: str, values: dict) -> None:
    for key, value in values.items():
        if "'" in value or "\n" in value:
            raise DeployError(f"{key} holds a quote or a newline: {value!r}")
    write(os.path.join(state_dir, "stack.json"), json.dumps(values, indent=2) + "\n")
    lines = [
        "# The local stack's outputs, written by local/deploy.sh. Load: set -a; . .local/stack.env; set +a",
        "# Values are single-quoted (API_URL holds a literal $default); programs can read stack.json.",
    ]
    lines += [f"{key}='{value}'" for key, value in values.items()]
    write(os.path.join(state_dir, "stack.env"), "\n".join(lines) + "\n")


def write(path: str, text: str) -> None:
    # Replaced atomically: a test reading the file never sees half of it.
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--template", required=True)
    p.add_argument("--bin-dir", required=True, help="directory holding one binary per function")
    p.add_argument("--build-dir", required=True, help="staging directory (emptied first)")
    p.add_argument("--state-dir", required=True, help="where stack.env and stack.json go")
    p.add_argument("--stack", required=True)
    p.add_argument("--bucket", required=True, help="artifact bucket inside the emulator")
    p.add_argument("--account", required=True)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()

    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    region = os.environ.get("AWS_REGION", "us-east-1")
    if not endpoint:
        print("deploy_stack: AWS_ENDPOINT_URL is not set: this script only deploys to an emulator", file=sys.stderr)
        return 2
    parameters = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"deploy_stack: parameter {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        parameters[key] = value

    s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}))
    cfn = boto3.client("cloudformation")
    ddb = boto3.client("dynamodb")
    try:
        template = load_template(args.template)
        shutil.rmtree(args.build_dir, ignore_errors=True)
        os.makedirs(args.build_dir)
        started = time.monotonic()
        staged = stage(template, args.bin_dir, args.build_dir)
        # What `sam build` would leave in .aws-sam/build: for a look, or `aws cloudformation package`.
        template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
        write(os.path.join(args.build_dir, "template.json"), json.dumps(template, indent=2, default=str))
        ensure_bucket(s3, args.bucket)
        package(s3, template, staged, args.bucket)
        package_definitions(s3, template, os.path.dirname(os.path.abspath(args.template)), args.bucket)
        body = json.dumps(template, separators=(",", ":"), default=str).encode()
        template_key = f"templates/{hashlib.sha256(body).hexdigest()}.json"
        upload_if_absent(s3, args.bucket, template_key, body)
        log(f"packaged {', '.join(staged)} in {time.monotonic() - started:.1f} s")

        started = time.monotonic()
        shown = " ".join(f"{k}={'<hidden>' if 'Secret' in k else v}" for k, v in parameters.items())
        log(f"deploying stack {args.stack} ({shown})")
        template_url = f"{endpoint}/{args.bucket}/{template_key}"
        # The functions hand the orchestrator approve/reject links under ApiBaseUrl, and only
        # the emulator's path form of the API's URL resolves locally. The API's id is known once
        # the stack exists: a first deploy is followed by an update that sets it.
        api_id = existing_api_id(cfn, args.stack) if "ApiBaseUrl" not in parameters else None
        if api_id:
            parameters["ApiBaseUrl"] = api_base_url(endpoint, api_id)
        changed = deploy(cfn, args.stack, template_url, parameters)
        if "ApiBaseUrl" not in parameters and template_declares(template, "ApiBaseUrl"):
            api_id = existing_api_id(cfn, args.stack)
            if not api_id:
                raise DeployError("the stack has no ApiId output")
            parameters["ApiBaseUrl"] = api_base_url(endpoint, api_id)
            log(f"setting ApiBaseUrl={parameters['ApiBaseUrl']}")
            changed = deploy(cfn, args.stack, template_url, parameters) or changed
        if "ApiBaseUrl" in parameters:
            deployed = stack_parameter(cfn, args.stack, "ApiBaseUrl")
            if deployed != parameters["ApiBaseUrl"]:
                raise DeployError(f"ApiBaseUrl is {deployed!r} after the deploy, not {parameters['ApiBaseUrl']!r}")
        verb = "deployed" if changed else "unchanged, checked"
        log(f"stack {verb} in {time.monotonic() - started:.1f} s")

        ttl = ttl_attribute(template)
        if ttl:
            table = cfn.describe_stack_resource(StackName=args.stack, LogicalResourceId=ttl[0])
            enable_ttl(ddb, table["StackResourceDetail"]["PhysicalResourceId"], ttl[1])
        values = stack_values(cfn, args.stack, endpoint, region, args.account)
        # What the local orchestrator and approver need to play their parts (local values only).
        values["ORCHESTRATOR_URL"] = parameters.get("OrchestratorUrl", "")
        values["ORCHESTRATOR_SECRET"] = parameters.get("OrchestratorSecret", "")
        values["APPROVER_PRINCIPALS"] = parameters.get("ApproverPrincipals", "")
        approver = values["APPROVER_PRINCIPALS"].split(",")[0].strip()
        if ":user/" in approver:
            values.update(ensure_approver(boto3.client("iam"), approver, values["API_ID"], region, args.account))
        write_outputs(args.state_dir, values)
        for key, value in values.items():
            print(f"{key}={'<hidden>' if 'SECRET' in key else value}", file=sys.stderr)
    except (DeployError, ClientError) as e:
        print(f"deploy_stack: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
