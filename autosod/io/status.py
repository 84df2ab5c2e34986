"""The closed set of row statuses, and the one helper that builds failure rows.

Every row the data plane produces carries `status` (`"ok"` or one failure reason below) and
`error` (a readable message, empty when ok). Edge functions return a status instead of raising.
"""

from __future__ import annotations

import math

__all__ = [
    "DECODE_ERROR",
    "EMPTY_FILE",
    "FAILURE_STATUSES",
    "MODEL_ERROR",
    "NOT_AN_IMAGE",
    "OK",
    "READ_ERROR",
    "STATUSES",
    "TOO_MANY_PIXELS",
    "TRUNCATED",
    "check_status",
    "failure_row",
]

OK = "ok"
EMPTY_FILE = "empty_file"  # zero bytes
TRUNCATED = "truncated"  # a known image signature, but the data ends early
NOT_AN_IMAGE = "not_an_image"  # no image format recognised (text, random bytes, ...)
TOO_MANY_PIXELS = "too_many_pixels"  # width * height above the configured pixel limit
READ_ERROR = "read_error"  # the bytes could not be read (missing object, permissions, network)
DECODE_ERROR = "decode_error"  # recognised but undecodable (corrupt data, unsupported mode)
MODEL_ERROR = "model_error"  # the labelling stage failed on this image

FAILURE_STATUSES = frozenset(
    {EMPTY_FILE, TRUNCATED, NOT_AN_IMAGE, TOO_MANY_PIXELS, READ_ERROR, DECODE_ERROR, MODEL_ERROR}
)
STATUSES = frozenset({OK}) | FAILURE_STATUSES

_MAX_ERROR_CHARS = 500


def check_status(status: str) -> str:
    """Return `status` unchanged when it is one of `STATUSES`; raise ValueError otherwise."""
    if status not in STATUSES:
        raise ValueError(
            f"unknown row status {status!r}; use one of {sorted(STATUSES)} from autosod.io.status"
        )
    return status


def failure_row(
    *,
    image_id: str,
    uri: str,
    status: str,
    error: str,
    config_hash: str = "",
    width: int = 0,
    height: int = 0,
) -> dict:
    """One store row (a dict with every `STORE_SCHEMA` column) for an image that failed.

    Masks are null, scores NaN; `error` is capped at 500 characters.
    """
    if check_status(status) == OK:
        raise ValueError(f"failure_row needs a failure status, got {status!r}")
    nan = math.nan
    return {
        "image_id": image_id,
        "uri": uri,
        "width": int(width),
        "height": int(height),
        "status": status,
        "error": str(error)[:_MAX_ERROR_CHARS],
        "mask_png": None,
        "saliency_png": None,
        "fg_fraction": nan,
        "mean_entropy": nan,
        "transport_cost": nan,
        "confidence": nan,
        "config_hash": config_hash,
    }
