"""The closed set of row statuses.

Every row the data plane produces carries `status` (`"ok"` or one failure reason below) and
`error` (a readable message, empty when ok). Edge functions return a status instead of raising.
"""

from __future__ import annotations

__all__ = [
    "DECODE_ERROR",
    "EMPTY_FILE",
    "FAILURE_STATUSES",
    "MODEL_ERROR",
    "NOT_AN_IMAGE",
    "NO_SIGNAL",
    "OK",
    "PERMANENT_STATUSES",
    "READ_ERROR",
    "RETRYABLE_STATUSES",
    "STATUSES",
    "TOO_MANY_PIXELS",
    "TRUNCATED",
]

OK = "ok"
EMPTY_FILE = "empty_file"  # zero bytes
TRUNCATED = "truncated"  # a known image signature, but the data ends early
NOT_AN_IMAGE = "not_an_image"  # no image format recognised (text, random bytes, ...)
TOO_MANY_PIXELS = "too_many_pixels"  # width * height above the configured pixel limit
READ_ERROR = "read_error"  # the bytes could not be read (missing object, permissions, network)
DECODE_ERROR = "decode_error"  # recognised but undecodable (corrupt data, unsupported mode)
MODEL_ERROR = "model_error"  # the labelling stage failed on this image
NO_SIGNAL = "no_signal"  # the model ran but gave nothing to label by (e.g. a constant image)

# a rerun retries these by default: the cause is outside the image (network, throttling,
# credentials, a sick GPU, out of memory) and may be gone next time
RETRYABLE_STATUSES = frozenset({READ_ERROR, MODEL_ERROR})
# these depend only on the image's bytes (and the model): retrying gives the same answer
PERMANENT_STATUSES = frozenset({EMPTY_FILE, TRUNCATED, NOT_AN_IMAGE, TOO_MANY_PIXELS,
                                DECODE_ERROR, NO_SIGNAL})
FAILURE_STATUSES = RETRYABLE_STATUSES | PERMANENT_STATUSES
STATUSES = frozenset({OK}) | FAILURE_STATUSES
