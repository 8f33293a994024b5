"""A small threaded HTTP/1.1 WSGI server with keep-alive.

werkzeug's dev server closes every connection (`Connection: close`), which makes each SDK call pay
for a new TCP connection and thread; the Stripe SDK keeps connections alive, so we do too. The raw
socket is exposed to the app as `environ["sandbox.socket"]` so a fault can drop the connection.
"""

from __future__ import annotations

import io
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

DROPPED = "sandbox.dropped"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StripeSandbox/1.0"
    timeout = 120  # idle keep-alive connections are closed after this
    server: SandboxHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
        pass

    def _wsgi(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "sandbox.socket": self.connection,
        }
        for key, value in self.headers.items():
            name = key.upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[f"HTTP_{name}"] = value
        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_headers[:] = [status, headers]
            return lambda data: None

        result = self.server.app(environ, start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if environ.get(DROPPED):
            self.close_connection = True
            return
        status, headers = status_headers
        lines = [f"HTTP/1.1 {status}"]
        has_length = False
        for key, value in headers:
            if key.lower() == "content-length":
                has_length = True
            lines.append(f"{key}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(payload)}")
        lines.append(f"Date: {self.date_time_string()}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + payload)  # one write: no Nagle stall between headers and body

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _wsgi  # noqa: N815 - http.server API


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Any) -> None:
        self.app = app
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])
