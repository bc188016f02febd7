"""The local Bedrock's HTTP transport: a threading server that reads each request's body (plain or chunked, up to
:data:`~.bedrock_api.MAX_BODY_BYTES`) and hands method, path and body to the service, which answers with status,
headers and body (:meth:`.bedrock_service.LocalBedrock.handle`)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .bedrock_api import MAX_BODY_BYTES, error_response, validation_error

_log = logging.getLogger(__name__)

#: Answers one request: (method, path with query, body) → (status, headers, body). Never raises.
Answer = Callable[[str, str, bytes], tuple[int, dict[str, str], bytes]]


class HttpServer(ThreadingHTTPServer):
    """Serves ``answer`` on ``address`` (port 0: any free port), a thread per connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], answer: Answer) -> None:
        super().__init__(address, _Handler)
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalBedrock/1.0"
    server: HttpServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            status, headers, payload = error_response(validation_error(str(exc)))
            self.close_connection = True
        else:
            status, headers, payload = self.server.answer(method, self.path, body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("The request body is too large.")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("The Content-Length header is not a number.") from None
        if length > MAX_BODY_BYTES:
            raise ValueError("The request body is too large.")
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("local Bedrock: " + format, *args)
