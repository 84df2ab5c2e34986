"""The package's import rules (docs/design.md), enforced on the source and in fresh interpreters.

- Imports point one way: each package may import only the packages its layer allows.
- Only the job modules (`autosod/<pkg>/job*.py`) and `autosod/ray_connection.py` import Ray.
- typer lives only in `autosod/cli/`.
- Config modules import neither torch, timm nor Ray; `autosod status`, `autosod export` and
  `autosod --help` never load them either.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autosod.io import MaskStore, encode_mask_png, encode_soft_png

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "autosod"

# the autosod packages each package may import (lazy imports inside functions included)
ALLOWED = {
    "potnet": {"potnet"},
    "io": {"io"},
    "models": {"models", "io"},
    "evaluation": {"evaluation", "io", "ray_connection"},
    "store_tools": {"store_tools", "io"},
    "labeling": {"labeling", "models", "potnet", "io", "ray_connection", "package_versions"},
    "training": {"training", "models", "evaluation", "io", "ray_connection", "package_versions"},
    "prediction": {"prediction", "training", "labeling", "models", "potnet", "evaluation", "io",
                   "ray_connection", "package_versions"},
    "benchmarks": {"benchmarks", "labeling", "training", "prediction", "models", "potnet",
                   "evaluation", "store_tools", "io", "ray_connection", "package_versions"},
    "cli": {"cli", "benchmarks", "labeling", "training", "prediction", "models", "potnet",
            "evaluation", "store_tools", "io", "ray_connection", "package_versions"},
    "ray_connection": set(),
    "package_versions": set(),
    "__init__": set(),
}
RAY_MODULES = re.compile(r"autosod/(\w+/job(_\w+)?|ray_connection)\.py")
HEAVY = ("torch", "timm", "ray")


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (top level and inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _package_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    package = _package_of(path)
    assert package in ALLOWED, f"new package {package!r}: give it a row in ALLOWED"
    used = {name.split(".")[1] for name in _imports(path)
            if name.startswith("autosod.") and name.count(".") >= 1}
    wrong = sorted(used - ALLOWED[package] - {package})
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) imports autosod.{wrong}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_job_modules_import_ray_and_only_cli_imports_typer(path: Path) -> None:
    relative = str(path.relative_to(ROOT))
    tops = {name.split(".")[0] for name in _imports(path)}
    if "ray" in tops:
        assert RAY_MODULES.fullmatch(relative), f"{relative} imports ray; only job modules may"
    if "typer" in tops:
        assert relative.startswith("autosod/cli/"), f"{relative} imports typer; only cli/ may"


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    """The scanners see lazy imports inside functions too."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    import ray.data\n    from autosod.labeling import job\n")
    assert {"ray.data", "autosod.labeling"} <= _imports(module)


def _fresh_modules(code: str) -> list[str]:
    """Run `code` in a fresh interpreter; return the heavy modules it left loaded."""
    probe = code + f"\nimport sys; print(__import__('json').dumps([m for m in {HEAVY!r} " \
                   "if m in sys.modules]))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CONFIG_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for pattern in ("config.py", "*_config.py") for path in PACKAGE.rglob(pattern)
)


@pytest.mark.parametrize("module", CONFIG_MODULES)
def test_config_modules_load_without_torch_timm_or_ray(module: str) -> None:
    assert _fresh_modules(f"import {module}") == []


def _tiny_store(path: Path) -> str:
    store = MaskStore.open(str(path), config={"test": 1})
    mask = np.eye(2, dtype=bool)
    store.write_part({"image_id": ["a"], "uri": ["file:///x/a.jpg"], "status": ["ok"],
                      "mask_png": [encode_mask_png(mask)],
                      "saliency_png": [encode_soft_png(mask.astype(np.uint8) * 255)]}, shard=0)
    return str(path)


@pytest.mark.parametrize("args", [["--help"], ["status", "{store}"],
                                  ["export", "{store}", "--out", "{out}"]])
def test_store_commands_never_load_torch_timm_or_ray(args: list[str], tmp_path: Path) -> None:
    """Done-when 1 of issue 13: the fast commands stay fast (no heavy imports)."""
    store = _tiny_store(tmp_path / "store")
    argv = [a.format(store=store, out=tmp_path / "out") for a in args]
    code = ("from typer.testing import CliRunner\nfrom autosod.cli import app\n"
            f"result = CliRunner().invoke(app, {argv!r})\n"
            "assert result.exit_code == 0, result.output\n")
    assert _fresh_modules(code) == []


def test_the_shared_attempts_actor_starts_without_torch_timm_or_ray() -> None:
    """The job's one attempts-ledger actor imports only its class's module: keep it light, so
    that its start does not cost the pipeline a torch and timm import (issue 17)."""
    from autosod.labeling import job_pipeline

    assert _fresh_modules(f"import {job_pipeline.LocalAttempts.__module__}") == []
