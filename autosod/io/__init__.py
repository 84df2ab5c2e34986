"""The data plane: manifests, safe decoding, mask codecs and the Parquet mask store.

Owns pyarrow, fsspec, s3fs and Pillow; never imports torch or ray.
"""

from autosod.io.decode import (
    DEFAULT_MAX_PIXELS,
    DecodeResult,
    decode_image,
    read_image,
    resize_to_input,
)
from autosod.io.filesystem import canonical_uri, open_filesystem, put_atomic, read_bytes
from autosod.io.manifest import (
    DEFAULT_EXTENSIONS,
    DEFAULT_SHARD_SIZE,
    MANIFEST_SCHEMA,
    build_manifest,
    image_id_for,
    load_manifest,
    manifest_from_uris,
    save_manifest,
)
from autosod.io.mask_codec import decode_mask_png, decode_soft_png, encode_mask_png, encode_soft_png
from autosod.io.status import STATUSES
from autosod.io.store.commit_log import Commit, CommitLogError, PartRef
from autosod.io.store.log_state import CommitLog
from autosod.io.store.mask_store import MODES, MaskStore, StoreConfigMismatchError, StorePart
from autosod.io.store.schema import SCHEMA_VERSION, STORE_SCHEMA, config_hash, to_store_table

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_SHARD_SIZE",
    "MANIFEST_SCHEMA",
    "MODES",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_SCHEMA",
    "Commit",
    "CommitLog",
    "CommitLogError",
    "DecodeResult",
    "MaskStore",
    "PartRef",
    "StoreConfigMismatchError",
    "StorePart",
    "build_manifest",
    "canonical_uri",
    "config_hash",
    "decode_image",
    "decode_mask_png",
    "decode_soft_png",
    "encode_mask_png",
    "encode_soft_png",
    "image_id_for",
    "load_manifest",
    "manifest_from_uris",
    "open_filesystem",
    "put_atomic",
    "read_bytes",
    "read_image",
    "resize_to_input",
    "save_manifest",
    "to_store_table",
]
