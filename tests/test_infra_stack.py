"""The infrastructure template lints clean, deploys on a moto server on loopback, and its node
role is enforced: with the role's own STS credentials and moto's IAM authorization switched on,
the workers read images, write stores and training runs, and cannot write the images bucket."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from conftest import _wait_for_port, free_port

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "autosod-stack.yaml"
REGION = "us-east-1"


def _template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    return template


def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint_file

    problems = lint_file(TEMPLATE)
    assert not problems, "cfn-lint:\n" + "\n".join(str(p) for p in problems)


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    from cfnlint.api import lint_file

    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text()
    assert '!Sub "${StoresBucket.Arn}/*"' in text
    broken.write_text(text.replace('!Sub "${StoresBucket.Arn}/*"', '!Sub "${Nowhere.Arn}/*"'))
    assert lint_file(broken), "cfn-lint accepted a reference to a missing resource"


def _deploy(endpoint: str, template_body: str, stack_name: str) -> dict[str, str]:
    """Create the stack on the moto server at `endpoint`; its outputs."""
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="admin", aws_secret_access_key="admin")
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=template_body,
        Parameters=[{"ParameterKey": "Prefix", "ParameterValue": stack_name}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


@pytest.fixture
def deployed_stack(s3: dict, s3_server: str) -> dict[str, str]:
    return _deploy(s3_server, TEMPLATE.read_text(), "autosodtest")


def test_stack_creates_buckets_roles_and_data_policy(deployed_stack: dict, s3_server: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name=REGION)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for key in ("ImagesBucketName", "StoresBucketName", "ModelsBucketName",
                "AccessLogsBucketName"):
        assert deployed_stack[key] in buckets, f"{key} was not created"
    iam = boto3.client("iam", endpoint_url=s3_server, region_name=REGION)
    for role in ("autosodtest-ray-node", "autosodtest-ray-head"):
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [role]
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [deployed_stack["DataAccessPolicyArn"]]
    assert iam.list_role_policies(RoleName="autosodtest-ray-node")["PolicyNames"] == [], (
        "workers get the data policy and nothing else"
    )


def test_template_keeps_buckets_private_encrypted_and_versioned() -> None:
    """moto's CloudFormation drops versioning, logging and lifecycle rules, so read them here."""
    resources = _template()["Resources"]
    buckets = {name: r["Properties"] for name, r in resources.items()
               if r["Type"] == "AWS::S3::Bucket"}
    assert set(buckets) == {"ImagesBucket", "StoresBucket", "ModelsBucket", "AccessLogsBucket"}
    for name, props in buckets.items():
        assert all(props["PublicAccessBlockConfiguration"].values()), f"{name} may go public"
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, name
        rules = props["LifecycleConfiguration"]["Rules"]
        assert any("NoncurrentVersionExpiration" in r for r in rules), (
            f"{name}: old versions would be kept forever"
        )
        if name != "AccessLogsBucket":
            assert props["LoggingConfiguration"]["DestinationBucketName"] == {
                "Ref": "AccessLogsBucket"}, name
            assert any("AbortIncompleteMultipartUpload" in r for r in rules), name


def test_template_declares_the_ray_token_secret_nodes_can_read() -> None:
    """moto's CloudFormation does not create AWS::SecretsManager::Secret, so read the template."""
    resources = _template()["Resources"]
    secret = resources["RayAuthToken"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert secret["Properties"]["Name"] == {"Fn::Sub": "${Prefix}/ray-auth-token"}
    statements = resources["DataAccessPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    read_token = next(s for s in statements if s["Sid"] == "ReadRayToken")
    assert read_token["Resource"]["Fn::Sub"].endswith(":secret:${Prefix}/ray-auth-token-??????")


# ---- enforcement: the node role's own credentials against moto's IAM authorization ------------

@pytest.fixture(scope="module")
def iam_server() -> Iterator[str]:
    """A moto server of this module's own: these tests switch its IAM authorization on."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, timeout_s=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _worker_s3(endpoint: str, template_body: str) -> tuple[Any, dict[str, str]]:
    """Deploy on a fresh server state, seed an image, assume the worker role, then enforce IAM.

    Returns an S3 client that signs with the role's STS session credentials, and the outputs.
    """
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    outputs = _deploy(endpoint, template_body, "autosodiam")
    admin = {"endpoint_url": endpoint, "region_name": REGION,
             "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    boto3.client("s3", **admin).put_object(
        Bucket=outputs["ImagesBucketName"], Key="unlabeled/0001.jpg", Body=b"jpeg")
    credentials = boto3.client("sts", **admin).assume_role(
        RoleArn=outputs["RayNodeRoleArn"], RoleSessionName="ray-worker")["Credentials"]
    # From here on every request is authenticated and authorized against IAM policies.
    requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    worker = boto3.client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )
    return worker, outputs


@pytest.fixture
def worker_s3(iam_server: str) -> Iterator[tuple[Any, dict[str, str]]]:
    yield _worker_s3(iam_server, TEMPLATE.read_text())
    requests.post(f"{iam_server}/moto-api/reset-auth", data=b"inf", timeout=10)


def _denied(call: Any, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "AccessDenied", error.response
        return True
    return False


def test_node_role_cannot_write_the_images_bucket(worker_s3: tuple[Any, dict]) -> None:
    worker, out = worker_s3
    images = out["ImagesBucketName"]
    assert worker.get_object(Bucket=images, Key="unlabeled/0001.jpg")["Body"].read() == b"jpeg"
    assert _denied(worker.put_object, Bucket=images, Key="unlabeled/0002.jpg", Body=b"x"), (
        "the node role wrote into the source images bucket"
    )
    assert _denied(worker.delete_object, Bucket=images, Key="unlabeled/0001.jpg"), (
        "the node role deleted a source image"
    )


def test_node_role_writes_stores_and_training_runs_only(worker_s3: tuple[Any, dict]) -> None:
    worker, out = worker_s3
    worker.put_object(Bucket=out["StoresBucketName"], Key="v1/commits/0.json", Body=b"{}")
    worker.delete_object(Bucket=out["StoresBucketName"], Key="v1/commits/0.json")
    worker.put_object(Bucket=out["ModelsBucketName"], Key="runs/v1/checkpoint/model.pt", Body=b"w")
    keys = worker.list_objects_v2(Bucket=out["ModelsBucketName"])["Contents"]
    assert [k["Key"] for k in keys] == ["runs/v1/checkpoint/model.pt"]
    assert _denied(worker.put_object, Bucket=out["ModelsBucketName"], Key="dino/w.pth",
                   Body=b"w"), "the node role overwrote pretrained weights outside runs/"
    assert _denied(worker.put_object, Bucket=out["AccessLogsBucketName"], Key="x", Body=b"x")


def test_enforcement_is_real_a_wider_policy_lets_the_write_through(iam_server: str) -> None:
    """The denial above comes from the policy: grant the images bucket and the write passes."""
    text = TEMPLATE.read_text()
    granted = 'Resource: !Sub "${StoresBucket.Arn}/*"'  # the WriteStores statement
    assert text.count(granted) == 1
    wider = text.replace(granted, granted.replace("Resource: ", "Resource: [")
                         + ', !Sub "${ImagesBucket.Arn}/*"]')
    try:
        worker, out = _worker_s3(iam_server, wider)
        worker.put_object(Bucket=out["ImagesBucketName"], Key="unlabeled/0002.jpg", Body=b"x")
    finally:
        requests.post(f"{iam_server}/moto-api/reset-auth", data=b"inf", timeout=10)
