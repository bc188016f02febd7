"""The console's HTTP server: pages, JSON endpoints, downloads and the one action, a redrive.

:class:`ConsoleServer` serves on 127.0.0.1 (a free port unless one is given) from a thread of the process that
holds the runtime (``batch-classifier serve``), over the runtime's boto3 clients. Routes:

==========================================  =================================================================
``GET /``                                   the executions (``?status=FAILED`` filters them)
``GET /executions/<name>``                  one execution: graph, states, map runs, history, redrive, results
``GET /runs/<run id>``                      one run: status table record, shards, report, output files
``GET /runs/<run id>/files/<name>``         a file of the run's output folder, streamed from S3
``GET /runs/<run id>/report``               the run's ``report.html``, sandboxed (its scripts get no origin)
``GET /api/executions``                     the executions as JSON (``?status=``), the newest 500 at most
``GET /api/executions/<name>``              one execution as JSON
``GET /api/executions/<name>/status``       its status and history length (what a page polls)
``GET /api/executions/<name>/graph.svg``    its state machine drawn with what happened in each state
``GET /api/runs/<run id>``                  one run as JSON
``POST /api/executions/<name>/redrive``     RedriveExecution; needs the header ``X-Console-Action: redrive``
``GET /api/health``                         whether the console answers
==========================================  =================================================================

``HEAD`` answers every ``GET`` route with its status and headers (``Content-Length`` included) and no body.

Everything is read-only except the redrive, which a link, a form or another site's script cannot send: it must
be a POST with a custom header (a cross-site request with one needs a CORS preflight this server never
grants), and an ``Origin`` or ``Sec-Fetch-Site`` header, when the browser sends one, must say this origin. Requests
whose ``Host`` is not this server's address are refused (DNS rebinding). Pages carry a Content-Security-Policy
that allows only this server's own script and style.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..executions import ExecutionNotRedrivable
from . import pages
from .views import ConsoleData, NotFound

LOG = logging.getLogger(__name__)

ACTION_HEADER = "X-Console-Action"
CHUNK = 64 * 1024
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The report is a self-contained page another part of the product writes (inline SVG and styles, no script): it is
# served sandboxed (an opaque origin: it cannot call this console), offline, and with no script allowed.
REPORT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:"
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class ConsoleServer:
    """The console over a runtime's clients (``LocalRuntime.client`` or ``Remote.client``) and its stack outputs
    (for the status table's name). ``start()`` serves from a daemon thread; ``stop()`` ends it."""

    def __init__(
        self,
        client: Callable[[str], Any],
        outputs: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.data = ConsoleData(client, outputs)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.console = self
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self.hosts = {f"{host}:{self.port}", f"localhost:{self.port}", f"127.0.0.1:{self.port}"}
        self.origins = {f"http://{name}" for name in self.hosts}
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="console", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ConsoleServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    console: ConsoleServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "batch-classifier-console"

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("console: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")  # routed as a GET; _send and _stream leave the body out

    def do_POST(self) -> None:
        self._dispatch("POST")

    # --- routing ----------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        parsed = urlsplit(self.path)
        segments = [unquote(part) for part in parsed.path.split("/") if part]
        wants_json = bool(segments) and segments[0] == "api"
        try:
            host = self.headers.get("Host")
            if host not in self.server.console.hosts:  # missing (HTTP/1.0) or another name: a rebinding attempt
                raise _Refused(HTTPStatus.FORBIDDEN, f"this console answers as {self.server.console.url} only")
            query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
            if method == "POST":
                self._post(segments)
            else:
                self._get(segments, query)
        except _Refused as refused:
            self._error(refused.status, refused.message, wants_json)
        except NotFound as missing:
            self._error(HTTPStatus.NOT_FOUND, str(missing), wants_json)
        except ExecutionNotRedrivable as refusal:
            self._error(HTTPStatus.CONFLICT, str(refusal), wants_json)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away
        except Exception as exc:
            LOG.exception("console: %s %s", method, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}", wants_json)

    def _get(self, segments: list[str], query: Mapping[str, str]) -> None:
        data = self.server.console.data
        match segments:
            case []:
                status = query.get("status") or None
                self._html(pages.executions_page(data.executions(), status))
            case ["executions", name]:
                self._html(pages.execution_page(data.execution(data.resolve(name))))
            case ["runs", run_id]:
                self._html(pages.run_page(data.run(_run_id(run_id))))
            case ["runs", run_id, "files", name]:
                self._download(_run_id(run_id), name)
            case ["runs", run_id, "report"]:
                self._report(_run_id(run_id))
            case ["static", name] if name in STATIC:
                body = resources.files(__package__).joinpath("static", name).read_bytes()
                self._send(HTTPStatus.OK, body, STATIC[name])
            case ["favicon.ico"]:
                self._send(HTTPStatus.NO_CONTENT, b"", "text/plain")
            case ["api", "health"]:
                self._json({"console": True})
            case ["api", "executions"]:
                self._json(data.executions(query.get("status") or None))
            case ["api", "executions", name]:
                self._json(data.execution(data.resolve(name)))
            case ["api", "executions", name, "status"]:
                self._json(data.execution_status(data.resolve(name)))
            case ["api", "executions", name, "graph.svg"]:
                svg = data.graph_svg(data.resolve(name))
                self._send(
                    HTTPStatus.OK,
                    svg.encode(),
                    "image/svg+xml; charset=utf-8",
                    {"Content-Security-Policy": PAGE_POLICY},
                )
            case ["api", "executions", _, "redrive"]:
                raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "a redrive is a POST")
            case ["api", "runs", run_id]:
                run = data.run(_run_id(run_id))
                self._json({**run, "signature": pages.run_signature(run)})
            case _:
                raise NotFound(f"no page {'/' + '/'.join(segments)}")

    def _post(self, segments: list[str]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))  # a redrive takes no body: drain it, keep the connection in step
        match segments:
            case ["api", "executions", name, "redrive"]:
                self._check_same_origin("redrive")
                data = self.server.console.data
                self._json(data.redrive(data.resolve(name)))
            case _:
                raise _Refused(HTTPStatus.METHOD_NOT_ALLOWED, "the console's only action is a redrive")

    def _check_same_origin(self, action: str) -> None:
        """A request this console's own page sent: its custom header, and no other origin."""
        if self.headers.get(ACTION_HEADER) != action:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"refused: a {action} needs the header {ACTION_HEADER}: {action} (the console sends it)",
            )
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.console.origins:
            raise _Refused(HTTPStatus.FORBIDDEN, f"refused: a {action} from another origin ({origin})")
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in {"same-origin", "none"}:
            raise _Refused(HTTPStatus.FORBIDDEN, f"refused: a {action} from another site ({site})")

    # --- answers ----------------------------------------------------------------------------------------------

    def _download(self, run_id: str, name: str) -> None:
        found = self.server.console.data.output(run_id, name)
        fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", name) or "download"
        headers = {
            "Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
            "Content-Length": str(found.length),
        }
        self._stream(found, found.content_type, headers)

    def _report(self, run_id: str) -> None:
        found = self.server.console.data.output(run_id, "report.html")
        headers = {"Content-Security-Policy": REPORT_POLICY, "Content-Length": str(found.length)}
        self._stream(found, "text/html; charset=utf-8", headers)

    def _stream(self, found: Any, content_type: str, headers: dict[str, str]) -> None:
        """Send an S3 object as it is read; its stream is closed whatever happens to the connection."""
        try:
            self._start(HTTPStatus.OK, content_type, headers)
            if self.command != "HEAD":
                for chunk in found.body.iter_chunks(CHUNK):
                    self.wfile.write(chunk)
        finally:
            found.body.close()

    def _html(self, text: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8", {"Content-Security-Policy": PAGE_POLICY})

    def _json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        # Escaped like JSON in a page: the endpoint's answer can never be read as HTML.
        body = pages.script_json(value).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str, wants_json: bool) -> None:
        try:
            if wants_json:
                self._json({"error": message}, status)
            else:
                self._html(pages.error_page(int(status), message), status)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self._start(status, content_type, {"Content-Length": str(len(body)), **(headers or {})})
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _start(self, status: HTTPStatus, content_type: str, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _run_id(text: str) -> str:
    if not _RUN_ID.fullmatch(text):
        raise NotFound(f"no run {text!r}")
    return text
