"""Versions of Python and of the packages a job's results depend on, recorded in every labelling,
prediction and training summary (no torch, no Ray)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["RECORDED_PACKAGES", "versions"]

RECORDED_PACKAGES = ("autosod", "ray", "torch", "timm", "numpy", "pyarrow", "pillow", "s3fs",
                     "cupy-cuda13x")


def versions() -> dict[str, str]:
    """{"python": ..., package: version} for the `RECORDED_PACKAGES` installed here."""
    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
