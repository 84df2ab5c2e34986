"""Cluster definitions validate against the schemas of the tools that consume them, run the jobs
with options those jobs really have, and keep the shape the issue asks for (scale from zero, a
head without work, an object store that fits its shared memory)."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
CRDS = ROOT.parent / "shared" / "schemas" / "kuberay"
CRD_OF_KIND = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
KUBERAY_MANIFESTS = [
    "raycluster.yaml",
    "rayjob-label.yaml",
    "rayjob-train.yaml",
    "rayjob-predict.yaml",
    "rayjob-evaluate.yaml",
]
# The job each RayJob runs, and the options whose s3:// URIs it writes to.
JOB_OF_MANIFEST = {
    "rayjob-label.yaml": ("label.py", ["store"]),
    "rayjob-evaluate.yaml": ("evaluate.py", []),
    "rayjob-train.yaml": ("train.py", ["run"]),
    "rayjob-predict.yaml": ("predict.py", ["store"]),
}
ENTRYPOINTS_CHECKED = list(JOB_OF_MANIFEST)
# Where the data policy of infra/autosod-stack.yaml lets the nodes write (account placeholder).
WRITABLE_PREFIXES = ("s3://autosod-stores-123456789012/", "s3://autosod-models-123456789012/runs/")
STACK_BUCKETS = {"autosod-images-123456789012", "autosod-stores-123456789012",
                 "autosod-models-123456789012"}
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)?$")


def _manifest(name: str) -> dict[str, Any]:
    return yaml.safe_load((KUBERAY / name).read_text())


def _cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"].get("rayClusterSpec", manifest["spec"])


@functools.cache
def _crd_schema(crd_file: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CustomResourceDefinition (parsed once)."""
    crd_path = CRDS / crd_file
    if not crd_path.is_file():
        pytest.skip(f"KubeRay CRD schemas not found at {CRDS} (../shared is absent)")
    crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise AssertionError(f"{crd_file} serves no version {version!r}")


def _bytes(quantity: str) -> int:
    """A Kubernetes quantity in bytes; only the binary suffixes these manifests use."""
    match = _QUANTITY.match(str(quantity))
    assert match, f"unexpected quantity {quantity!r}: use an integer with Ki/Mi/Gi/Ti"
    power = {None: 0, "Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4}[match.group(2)]
    return int(match.group(1)) * 1024**power


def _ray_groups(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group name, group spec) of the head and every worker group."""
    return [("head", spec["headGroupSpec"])] + [
        (group["groupName"], group) for group in spec["workerGroupSpecs"]
    ]


def test_every_ray_manifest_is_listed() -> None:
    """A new RayCluster/RayJob file must join the table, or the checks below would miss it."""
    on_disk = {p.name for p in KUBERAY.glob("*.yaml")
               if yaml.safe_load(p.read_text())["apiVersion"].startswith("ray.io/")}
    assert on_disk == set(KUBERAY_MANIFESTS)
    assert set(JOB_OF_MANIFEST) == {n for n in KUBERAY_MANIFESTS if n.startswith("rayjob-")}


@pytest.mark.parametrize("manifest_name", KUBERAY_MANIFESTS)
def test_kuberay_manifest_matches_crd(manifest_name: str) -> None:
    manifest = _manifest(manifest_name)
    group, version = manifest["apiVersion"].split("/")
    assert group == "ray.io", manifest["apiVersion"]
    jsonschema.validate(manifest, _crd_schema(CRD_OF_KIND[manifest["kind"]], version))


def test_kuberay_validation_rejects_a_broken_manifest() -> None:
    """The CRD check is real: a worker group without maxReplicas must fail it."""
    manifest = _manifest("raycluster.yaml")
    del manifest["spec"]["workerGroupSpecs"][0]["maxReplicas"]
    schema = _crd_schema("ray.io_rayclusters.yaml", "v1")
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(manifest, schema)


@pytest.mark.parametrize("manifest_name", KUBERAY_MANIFESTS)
def test_kuberay_manifests_pin_installed_ray_and_token_auth(manifest_name: str) -> None:
    cluster_spec = _cluster_spec(_manifest(manifest_name))
    assert cluster_spec["rayVersion"] == ray.__version__, "manifest and pinned ray differ"
    assert cluster_spec["authOptions"]["mode"] == "token", "clusters must keep token auth"


@pytest.mark.parametrize("manifest_name", KUBERAY_MANIFESTS)
def test_workers_scale_from_zero_and_head_runs_no_tasks(manifest_name: str) -> None:
    spec = _cluster_spec(_manifest(manifest_name))
    assert spec["enableInTreeAutoscaling"] is True, "without the autoscaler nothing scales"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in spec["workerGroupSpecs"]:
        name = group["groupName"]
        assert group["minReplicas"] == 0 and group["replicas"] == 0, f"{name} not from zero"
        assert group["maxReplicas"] > 0, f"{name} can never scale up"
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]
                  ["limits"]]
    expect_gpu = manifest_name != "rayjob-evaluate.yaml"  # scoring needs no GPU
    assert bool(gpu_groups) == expect_gpu, f"{manifest_name}: GPU groups {gpu_groups}"


@pytest.mark.parametrize("manifest_name", KUBERAY_MANIFESTS)
def test_shared_memory_holds_the_object_store(manifest_name: str) -> None:
    """Each Ray pod mounts a memory-backed /dev/shm at least as large as its object store,
    inside the container's memory limit (tmpfs pages count against it)."""
    for name, group in _ray_groups(_cluster_spec(_manifest(manifest_name))):
        object_store = int(group["rayStartParams"]["object-store-memory"])
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["emptyDir"]["medium"] == "Memory", f"{name}: /dev/shm not in memory"
        shm = _bytes(volume["emptyDir"]["sizeLimit"])
        memory = _bytes(container["resources"]["limits"]["memory"])
        assert object_store <= shm, f"{name}: object store {object_store} > /dev/shm {shm}"
        assert shm <= memory // 2, f"{name}: /dev/shm {shm} leaves too little of {memory}"


def _load_job_command(script: str) -> Any:
    """The (click) command of jobs/<script>, loaded by path as `python jobs/<script>` does."""
    path = ROOT / "jobs" / script
    spec = importlib.util.spec_from_file_location(f"_job_{path.stem}", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return typer.main.get_command(module.app)


def _parse_entrypoint(manifest_name: str) -> dict[str, Any]:
    script, _ = JOB_OF_MANIFEST[manifest_name]
    argv = shlex.split(_manifest(manifest_name)["spec"]["entrypoint"])
    assert argv[:2] == ["python", f"/opt/autosod/jobs/{script}"], argv[:2]
    command = _load_job_command(script)
    return command.make_context(script, argv[2:], resilient_parsing=False).params


@pytest.mark.parametrize("manifest_name", ENTRYPOINTS_CHECKED)
def test_rayjob_entrypoint_parses_with_the_jobs_own_options(manifest_name: str) -> None:
    """The entrypoint parses against the job's real CLI: a stale flag or a missing argument
    fails here, not on the cluster."""
    params = _parse_entrypoint(manifest_name)
    uris = [v for value in params.values()
            for v in (value if isinstance(value, list) else [value])
            if isinstance(v, str) and v.startswith("s3://")]
    assert uris, f"{manifest_name}: no s3:// input or output parsed"
    for uri in uris:
        assert uri.split("/")[2] in STACK_BUCKETS, f"{uri}: not a bucket of infra/"
    _, outputs = JOB_OF_MANIFEST[manifest_name]
    for option in outputs:
        assert params[option].startswith(WRITABLE_PREFIXES), (
            f"{manifest_name} writes {params[option]}, where the node role may not write"
        )


def test_entrypoint_check_rejects_an_unknown_option() -> None:
    script, _ = JOB_OF_MANIFEST["rayjob-label.yaml"]
    argv = shlex.split(_manifest("rayjob-label.yaml")["spec"]["entrypoint"])[2:]
    with pytest.raises(Exception, match="No such option: --no-such-flag"):
        _load_job_command(script).make_context(script, [*argv, "--no-such-flag"])


def test_image_holds_the_job_scripts_where_rayjobs_call_them() -> None:
    dockerfile = (CLUSTER / "docker" / "Dockerfile").read_text()
    assert "COPY jobs /opt/autosod/jobs" in dockerfile
    for manifest_name, (script, _) in JOB_OF_MANIFEST.items():
        assert f"/opt/autosod/jobs/{script}" in _manifest(manifest_name)["spec"]["entrypoint"]


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "aws" / "autosod-cluster.yaml").read_text())


def test_launcher_yaml_matches_ray_schema(launcher: dict[str, Any]) -> None:
    schema_text = resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text()
    jsonschema.validate(launcher, json.loads(schema_text))


def test_launcher_validation_rejects_a_broken_config(launcher: dict[str, Any]) -> None:
    schema = json.loads(resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())
    broken = {**launcher, "available_node_types": {
        **launcher["available_node_types"], "gpu": {"min_workers": 0}}}
    with pytest.raises(jsonschema.ValidationError, match="node_config"):
        jsonschema.validate(broken, schema)


def test_launcher_head_runs_no_work_and_workers_start_from_zero(launcher: dict) -> None:
    types = launcher["available_node_types"]
    head = types[launcher["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "the head must not schedule tasks"
    workers = {name: t for name, t in types.items() if name != launcher["head_node_type"]}
    assert {"cpu_decode", "gpu"} <= set(workers)
    for name, node_type in workers.items():
        assert node_type["min_workers"] == 0, f"{name} does not scale from zero"
        profile = node_type["node_config"]["IamInstanceProfile"]["Arn"]
        assert profile.endswith("/autosod-ray-node"), f"{name} runs as {profile}"
    assert head["node_config"]["IamInstanceProfile"]["Arn"].endswith("/autosod-ray-head")


def test_launcher_keeps_token_auth_and_sizes_shared_memory(launcher: dict) -> None:
    docker = launcher["docker"]
    assert "-e RAY_AUTH_MODE=token" in docker["run_options"], "nodes start without token auth"
    token_path = next(o for o in docker["run_options"] if o.startswith("-e RAY_AUTH_TOKEN_PATH="))
    assert any(o.endswith(f":{token_path.split('=')[1]}:ro") for o in docker["run_options"])
    for options, commands in ((docker["head_run_options"], launcher["head_start_ray_commands"]),
                              (docker["worker_run_options"],
                               launcher["worker_start_ray_commands"])):
        shm = next(int(o.removeprefix("--shm-size=").removesuffix("g")) * 1024**3
                   for o in options if o.startswith("--shm-size="))
        store = next(int(m) for c in commands
                     for m in re.findall(r"--object-store-memory=(\d+)", c))
        assert store <= shm, f"object store {store} does not fit /dev/shm {shm}"


def test_runtime_env_is_accepted_by_ray() -> None:
    from ray.runtime_env import RuntimeEnv

    env = RuntimeEnv(**yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text()))
    assert env["working_dir"] == "."
    assert ".venv/" in env["excludes"]
