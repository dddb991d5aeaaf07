"""Schemathesis hooks for the API fuzzing test (tests/tests/api_fuzz.rs, docs/reliability.md).

Loaded with SCHEMATHESIS_HOOKS=tests/schemathesis/hooks.py. Every route but the health check and
the OpenAPI document needs an AWS Signature Version 4 (IAM), which schemathesis cannot make, so:

- `before_call` hands each request a `requests` auth object that signs it with botocore's SigV4Auth
  for `execute-api`, after schemathesis has serialized it: the signature covers the exact method,
  URL (query included) and body bytes that go on the wire;
- `before_call` also swaps an encoded line feed (%0A) in a path parameter for a carriage return
  (%0D): the emulator's `ANY /{proxy+}` route does not match a path with a line feed and answers
  with its own 404 `{"message": "Not Found"}`, before the API function sees the request. Both are
  invalid in an id, so the case stays what it was (the function answers 400 for either);
- `after_call` appends the id of every instance the run registered (a 201 of POST /api/v1/instances)
  to the file PERFAGENT_FUZZ_CREATED names, so the test deletes those and nothing else.

Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
(optional) and AWS_REGION: the test passes the local stack's (.local/stack.env).
"""

import os

import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The headers SigV4Auth adds; only these are copied onto the outgoing request.
_SIGNATURE_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


class _SigV4(requests.auth.AuthBase):
    """Signs a prepared request for API Gateway (service `execute-api`)."""

    def __init__(self) -> None:
        self.credentials = Credentials(
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ.get("AWS_SESSION_TOKEN") or None,
        )
        self.region = os.environ.get("AWS_REGION", "us-east-1")

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body
        if isinstance(body, str):
            # Sign and send the same bytes (http.client would encode a str body as Latin-1).
            body = body.encode("utf-8")
            request.body = body
            request.prepare_content_length(body)
        # Sign what API Gateway checks: the host (from the URL), the content type and the body's
        # hash; whatever else the client adds on the way does not invalidate the signature.
        signed = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        aws = AWSRequest(method=request.method, url=request.url, data=body or b"", headers=signed)
        SigV4Auth(self.credentials, "execute-api", self.region).add_auth(aws)
        for name in _SIGNATURE_HEADERS:
            if name in aws.headers:
                request.headers[name] = aws.headers[name]
        return request


_AUTH = _SigV4()


@schemathesis.hook
def before_call(context, case, kwargs):
    kwargs["auth"] = _AUTH
    for name, value in (case.path_parameters or {}).items():
        if isinstance(value, str):
            case.path_parameters[name] = value.replace("%0A", "%0D").replace("%0a", "%0D")


@schemathesis.hook
def after_call(context, case, response):
    created = os.environ.get("PERFAGENT_FUZZ_CREATED")
    if not created or response.status_code != 201:
        return
    if case.method.upper() != "POST" or case.operation.path != "/api/v1/instances":
        return
    try:
        instance_id = response.json().get("id")
    except ValueError:
        return
    if isinstance(instance_id, str):
        with open(created, "a", encoding="utf-8") as out:
            out.write(instance_id + "\n")
