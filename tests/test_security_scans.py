"""checkov over cluster/ and infra/, hadolint over the Dockerfile: they pass, every accepted
finding carries its reason next to the resource, and both fail on deliberately broken copies.

checkov runs twice per session (the real files, one broken copy of all of them), each over one
staged directory where the KubeRay manifests appear as the pods they create
(tests/security_scans.py).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from security_scans import run_checkov, run_hadolint, stage_for_checkov

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "cluster" / "docker" / "Dockerfile"
MIN_REASON_CHARS = 40  # "ok", "n/a" or a check's own title are not reasons
# Each deliberate break: (file, text in it, replacement). Every one must change the file.
BREAKS = [
    # a public images bucket: public-read ACL, public policies allowed
    ("infra/autosod-stack.yaml",
     '      BucketName: !Sub "${Prefix}-images-${AWS::AccountId}"\n',
     '      BucketName: !Sub "${Prefix}-images-${AWS::AccountId}"\n'
     "      AccessControl: PublicRead\n"),
    ("infra/autosod-stack.yaml", "        BlockPublicPolicy: true\n",
     "        BlockPublicPolicy: false\n"),
    # a wildcard IAM write: s3:PutObject on every resource
    ("infra/autosod-stack.yaml", 'Resource: !Sub "${StoresBucket.Arn}/*"',
     'Resource: "*"'),
    # a root user in the image
    ("cluster/docker/Dockerfile", "USER 10001:10001", "USER root"),
    # pods that may escalate to root
    ("cluster/kuberay/raycluster.yaml", "allowPrivilegeEscalation: false",
     "allowPrivilegeEscalation: true"),
    ("cluster/kuberay/raycluster.yaml", "            securityContext: &container-security\n",
     "            securityContext: &container-security\n              privileged: true\n"),
]
# What checkov must then report: (file, resource fragment, check id).
EXPECTED_FAILURES = [
    ("/infra/autosod-stack.yaml", "ImagesBucket", "CKV_AWS_20"),   # public-read ACL
    ("/infra/autosod-stack.yaml", "AccessLogsBucket", "CKV_AWS_54"),  # block public policy
    ("/infra/autosod-stack.yaml", "DataAccessPolicy", "CKV_AWS_111"),  # unconstrained write
    ("/cluster/docker/Dockerfile", "Dockerfile", "CKV_DOCKER_8"),  # last USER is root
    ("/cluster/kuberay/raycluster.yaml", "autosod-head", "CKV_K8S_20"),  # privilege escalation
    ("/cluster/kuberay/raycluster.yaml", "autosod-head", "CKV_K8S_16"),  # privileged container
]


def _checks(reports: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [check for report in reports for check in report["results"].get(kind, [])]


@pytest.fixture(scope="session")
def checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    stage = stage_for_checkov(ROOT, tmp_path_factory.mktemp("checkov-real"))
    started = time.monotonic()
    reports = run_checkov(stage)
    print(f"checkov over cluster/ and infra/: {time.monotonic() - started:.1f} s")
    return reports


@pytest.fixture(scope="session")
def broken_checkov_reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    broken = tmp_path_factory.mktemp("broken-root")
    for directory in ("cluster", "infra"):
        shutil.copytree(ROOT / directory, broken / directory)
    for relative, old, new in BREAKS:
        path = broken / relative
        text = path.read_text()
        assert old in text, f"{relative} no longer holds {old!r}: update the break"
        path.write_text(text.replace(old, new))
    return run_checkov(stage_for_checkov(broken, tmp_path_factory.mktemp("checkov-broken")))


def test_checkov_scans_dockerfile_stack_and_pods(checkov_reports: list[dict]) -> None:
    counts = {r["check_type"]: r["summary"]["resource_count"] for r in checkov_reports}
    assert counts.get("dockerfile") == 1, counts
    assert counts.get("cloudformation", 0) >= 10, counts
    # 3 RayCluster pods; head, decode, GPU and submitter pods of the label, train and predict
    # jobs; head, decode and submitter of evaluate; the NetworkPolicy.
    assert counts.get("kubernetes") == 3 + 3 * 4 + 3 + 1, counts
    for report in checkov_reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]


def test_checkov_passes(checkov_reports: list[dict]) -> None:
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in _checks(checkov_reports, "failed_checks")]
    assert not failed, "checkov failed:\n" + "\n".join(failed)


def test_every_checkov_skip_carries_a_reason(checkov_reports: list[dict]) -> None:
    skipped = _checks(checkov_reports, "skipped_checks")
    assert skipped, "no skips seen: the skip reasons of the files were not read"
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        where = f"{check['check_id']} on {check['resource']} ({check['file_path']})"
        assert len(reason) >= MIN_REASON_CHARS, f"{where} is skipped without a reason: {reason!r}"


@pytest.mark.parametrize(("file_path", "resource", "check_id"), EXPECTED_FAILURES)
def test_checkov_fails_on_a_broken_copy(
    broken_checkov_reports: list[dict], file_path: str, resource: str, check_id: str
) -> None:
    failed = {(c["file_path"], c["check_id"], c["resource"])
              for c in _checks(broken_checkov_reports, "failed_checks")}
    assert any(f == file_path and i == check_id and resource in r for f, i, r in failed), (
        f"checkov did not report {check_id} on {resource} in {file_path}; it reported "
        f"{sorted(failed)}"
    )


def test_hadolint_passes() -> None:
    done = run_hadolint(DOCKERFILE)
    assert done.returncode == 0 and done.stdout.strip() in ("", "[]"), done.stdout + done.stderr


def test_every_hadolint_ignore_carries_a_reason() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore=" in line]
    assert ignores, "no hadolint ignores found (then drop this test's premise)"
    for index in ignores:
        comment = []
        for line in reversed(lines[:index]):
            if not line.startswith("#"):
                break
            comment.insert(0, line.lstrip("# "))
        reason = " ".join(comment)
        assert reason.startswith("Reason:") and len(reason) >= MIN_REASON_CHARS, (
            f"line {index + 1}: `{lines[index]}` has no `# Reason: ...` comment above it"
        )


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        ("USER 10001:10001", "USER root", "DL3002"),  # last USER is root
        ("# hadolint ignore=DL3008\n", "", "DL3008"),  # the ignore is what hides the finding
    ],
)
def test_hadolint_fails_on_a_broken_copy(tmp_path: Path, old: str, new: str, rule: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text, f"the Dockerfile no longer holds {old!r}: update the break"
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new))
    done = run_hadolint(broken)
    assert done.returncode != 0, f"hadolint accepted the broken copy:\n{done.stdout}"
    assert re.search(rf'"code":\s*"{rule}"', done.stdout), done.stdout
