"""A loopback HTTP proxy in front of the moto S3 server that fails chosen requests for real.

Clients (s3fs in this process, Ray workers, job subprocesses) use the proxy's URL as their S3
endpoint. Every request is forwarded to moto unchanged, except those matching a rule, which get a
real S3 error response (status code and XML error body) without reaching moto. Nothing in the
client is patched: botocore and s3fs see exactly what a failing S3 would send.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

__all__ = ["FaultProxy", "Rule", "fault_proxy"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "content-length"}


@dataclass
class Rule:
    """Fail `method` requests whose decoded path matches `path` (a regex), `times` times (None:
    always), with `status` and S3 error `code`. `hits` counts the failures served."""

    method: str
    path: str
    times: int | None
    status: int
    code: str
    hits: int = 0

    def take(self, method: str, path: str) -> bool:
        if method != self.method or not re.search(self.path, path):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        self.hits += 1
        return True


class FaultProxy:
    """The proxy; `url` is the endpoint to give clients, `fail(...)` adds a rule."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname, parts.port)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.forwarded: list[tuple[str, str]] = []  # (method, decoded path) sent on to moto
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, method: str, path: str, *, times: int | None = None, status: int = 403,
             code: str = "AccessDenied") -> Rule:
        """Fail matching requests (see `Rule`); returns the rule (its `hits` count failures)."""
        rule = Rule(method, path, times, status, code)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._rules.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            return next((rule for rule in self._rules if rule.take(method, path)), None)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        path = unquote(urlsplit(handler.path).path)
        rule = self._rule_for(handler.command, path)
        if rule is not None:
            payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}</Code>'
                       f"<Message>failed by the test proxy</Message><Resource>{path}</Resource>"
                       "<RequestId>fault-proxy</RequestId></Error>").encode()
            _respond(handler, rule.status, [("Content-Type", "application/xml")], payload)
            return
        connection = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = [(k, v) for k, v in response.getheaders()
                    if k.lower() not in _HOP_BY_HOP
                    or (handler.command == "HEAD" and k.lower() == "content-length")]
            with self._lock:
                self.forwarded.append((handler.command, path))
            _respond(handler, response.status, kept, payload)
        finally:
            connection.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _respond(handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]],
             payload: bytes) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    if handler.command != "HEAD":  # a HEAD answer keeps the object's length (forwarded below)
        handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A `FaultProxy` in front of `upstream`, closed on exit."""
    proxy = FaultProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
