"""fsspec filesystems for local paths and `s3://` URIs, canonical URIs and atomic writes."""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "canonical_uri",
    "file_stem",
    "is_local",
    "join_uri",
    "open_filesystem",
    "put_atomic",
    "read_bytes",
    "storage_options_for",
]



def storage_options_for(endpoint_url: str | None) -> dict[str, Any]:
    """s3fs storage options for an S3-compatible endpoint (empty when None: AWS or the env)."""
    if not endpoint_url:
        return {}
    return {"client_kwargs": {"endpoint_url": endpoint_url}}


def _s3_options(storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """Copy of s3fs options; the endpoint comes from the options or from `AWS_ENDPOINT_URL`."""
    options = dict(storage_options or {})
    client_kwargs = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client_kwargs.get("endpoint_url")
    if not endpoint and os.environ.get("AWS_ENDPOINT_URL"):
        client_kwargs["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def open_filesystem(
    uri: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path, `file://` URI or `s3://bucket/key`.

    For S3 the endpoint is taken from `storage_options` (`endpoint_url` or
    `client_kwargs.endpoint_url`) or from the `AWS_ENDPOINT_URL` environment variable, so
    S3-compatible services (MinIO, Ceph, moto) work the same way.
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"expected a local path or s3:// URI, got {uri!r}")
    if uri.startswith(("s3://", "s3a://")):
        fs = fsspec.filesystem("s3", **_s3_options(storage_options))
        return fs, fs._strip_protocol(uri)
    if "://" in uri and not uri.startswith("file://"):
        protocol = uri.split("://", 1)[0]
        fs = fsspec.filesystem(protocol, **(storage_options or {}))
        return fs, fs._strip_protocol(uri)
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (atomic rename available)."""
    return isinstance(fs, LocalFileSystem)


def canonical_uri(uri: str) -> str:
    """The one spelling of a location that image ids hash: `file:///abs/path` or `s3://b/k`.

    Local paths are made absolute and normalised (symlinks are not resolved); `s3a://` becomes
    `s3://`; duplicate slashes inside S3 keys are kept (they are part of the key).
    """
    if uri.startswith(("s3://", "s3a://")):
        return "s3://" + uri.split("://", 1)[1]
    if "://" in uri and not uri.startswith("file://"):
        return uri
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return "file://" + os.path.abspath(os.path.expanduser(path))


def file_stem(uri: str) -> str:
    """The file name of a path or URI without its last extension, the name that pairs an image
    with its mask and its exported PNG: `s3://b/x/cat.01.jpg` -> `cat.01`; a dot-file keeps its
    name (`.horse.jpg` -> `.horse`, `.bashrc` -> `.bashrc`, as `os.path.splitext` does)."""
    return posixpath.splitext(posixpath.basename(uri.rstrip("/")))[0]


def join_uri(base: str, *parts: str) -> str:
    """`base` joined with relative `parts` using `/` (works for paths and URIs)."""
    return posixpath.join(base.rstrip("/"), *parts)


def read_bytes(uri: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """All bytes of one file or object; raises the filesystem's error when it cannot be read."""
    fs, path = open_filesystem(uri, storage_options)
    return fs.cat_file(path)


def put_atomic(
    fs: fsspec.AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str | None = None
) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    Local: write a temp file in `tmp_dir` (default: beside `path`; same filesystem), fsync,
    then `os.replace`. S3: upload to a temp key, then a server-side copy to `path`, then delete
    the temp key.
    """
    tmp_dir = tmp_dir or posixpath.dirname(path)
    tmp = posixpath.join(tmp_dir, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
    if is_local(fs):
        os.makedirs(tmp_dir, exist_ok=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return
    fs.pipe_file(tmp, data)
    try:
        fs.copy(tmp, path)
    finally:
        fs.rm_file(tmp)
