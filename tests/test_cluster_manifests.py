"""Cluster definitions validate against the schemas of the tools that consume them."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
CRDS = ROOT.parent / "shared" / "schemas" / "kuberay"
KUBERAY_MANIFESTS = {
    "raycluster.yaml": "ray.io_rayclusters.yaml",
    "rayjob-label.yaml": "ray.io_rayjobs.yaml",
}


def _crd_schema(crd_file: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CustomResourceDefinition."""
    crd_path = CRDS / crd_file
    if not crd_path.is_file():
        pytest.skip(f"KubeRay CRD schemas not found at {CRDS} (../shared is absent)")
    crd = yaml.safe_load(crd_path.read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{crd_file} serves no version {version!r}")


@pytest.mark.parametrize("manifest_name", sorted(KUBERAY_MANIFESTS))
def test_kuberay_manifest_matches_crd(manifest_name: str) -> None:
    manifest = yaml.safe_load((CLUSTER / "kuberay" / manifest_name).read_text())
    group, version = manifest["apiVersion"].split("/")
    assert group == "ray.io", manifest["apiVersion"]
    schema = _crd_schema(KUBERAY_MANIFESTS[manifest_name], version)
    jsonschema.validate(manifest, schema)


def test_kuberay_validation_rejects_a_broken_manifest() -> None:
    """The CRD check is real: a worker group without maxReplicas must fail it."""
    manifest = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    del manifest["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    schema = _crd_schema("ray.io_rayclusters.yaml", "v1")
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(manifest, schema)


@pytest.mark.parametrize("manifest_name", sorted(KUBERAY_MANIFESTS))
def test_kuberay_manifests_pin_installed_ray_and_token_auth(manifest_name: str) -> None:
    spec = yaml.safe_load((CLUSTER / "kuberay" / manifest_name).read_text())["spec"]
    cluster_spec = spec.get("rayClusterSpec", spec)
    assert cluster_spec["rayVersion"] == ray.__version__, "manifest and pinned ray differ"
    assert cluster_spec["authOptions"]["mode"] == "token", "clusters must keep token auth"


def test_launcher_yaml_matches_ray_schema() -> None:
    schema_text = resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text()
    config = yaml.safe_load((CLUSTER / "aws" / "autosod-cluster.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_text))
    assert config["head_node_type"] in config["available_node_types"]
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command, f"node starts without token auth: {command}"


def test_runtime_env_is_accepted_by_ray() -> None:
    from ray.runtime_env import RuntimeEnv

    env = RuntimeEnv(**yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text()))
    assert env["working_dir"] == "."
    assert ".venv/" in env["excludes"]


def test_rayjob_entrypoint_uses_only_options_of_the_label_job() -> None:
    """The RayJob's command line parses with jobs/label.py's own options (no stale flags)."""
    import shlex

    import typer.main

    from autosod.cli.label import label_command

    spec = yaml.safe_load((CLUSTER / "kuberay" / "rayjob-label.yaml").read_text())["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "/opt/autosod/jobs/label.py"], argv[:2]
    assert (ROOT / "jobs" / "label.py").is_file()
    app = typer.Typer()
    app.command()(label_command)
    command = typer.main.get_command(app)
    context = command.make_context("label", argv[2:], resilient_parsing=False)
    assert context.params["source"].startswith("s3://")
    with pytest.raises(Exception, match="No such option: --no-such-flag"):
        command.make_context("label", [*argv[2:], "--no-such-flag"])
