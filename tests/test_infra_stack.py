"""The infrastructure template lints clean and deploys on a moto server on loopback."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[1] / "infra" / "autosod-stack.yaml"


def test_template_passes_cfn_lint() -> None:
    from cfnlint.api import lint_file

    problems = lint_file(TEMPLATE)
    assert not problems, "cfn-lint:\n" + "\n".join(str(p) for p in problems)


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    from cfnlint.api import lint_file

    broken = tmp_path / "broken.yaml"
    text = TEMPLATE.read_text().replace("!GetAtt StoresBucket.Arn", "!GetAtt Nowhere.Arn")
    broken.write_text(text)
    assert lint_file(broken), "cfn-lint accepted a reference to a missing resource"


@pytest.fixture
def deployed_stack(s3: dict, s3_server: str) -> dict[str, str]:
    """Create the stack on the moto server; yields its outputs."""
    cfn = boto3.client("cloudformation", endpoint_url=s3_server, region_name="us-east-1")
    cfn.create_stack(
        StackName="autosod-test",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "Prefix", "ParameterValue": "autosodtest"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cfn.describe_stacks(StackName="autosod-test")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def test_stack_creates_buckets_secret_and_node_role(deployed_stack: dict, s3_server: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for key in ("ImagesBucketName", "StoresBucketName", "ModelsBucketName"):
        assert deployed_stack[key] in buckets, f"{key} was not created"

    iam = boto3.client("iam", endpoint_url=s3_server, region_name="us-east-1")
    profile = iam.get_instance_profile(InstanceProfileName="autosodtest-ray-node")
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == ["autosodtest-ray-node"]
    policy = iam.get_role_policy(RoleName="autosodtest-ray-node", PolicyName="autosod-data")
    document = policy["PolicyDocument"]
    if isinstance(document, str):  # moto returns the policy as Python-literal text
        document = yaml.safe_load(document)
    writes = next(s for s in document["Statement"] if s["Sid"] == "WriteStores")
    assert any(deployed_stack["StoresBucketName"] in r for r in writes["Resource"])
    assert not any(deployed_stack["ImagesBucketName"] in r for r in writes["Resource"]), (
        "nodes must not be able to write the source images"
    )


def test_template_declares_the_ray_token_secret() -> None:
    """moto's CloudFormation does not create AWS::SecretsManager::Secret, so read the template."""
    from cfnlint.decode import decode_str

    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    secret = template["Resources"]["RayAuthToken"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    statements = template["Resources"]["RayNodeRole"]["Properties"]["Policies"][0]
    read_token = next(
        s for s in statements["PolicyDocument"]["Statement"] if s["Sid"] == "ReadRayToken"
    )
    assert read_token["Resource"] == {"Ref": "RayAuthToken"}
