"""The loopback pieces the real-world tasks use: an HTTP server on 127.0.0.1 and a file."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BODY = b"hello from the seed project's loopback server\n"


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        """No access log on the terminal."""


def start_http_server() -> tuple[ThreadingHTTPServer, str]:
    """Serve on 127.0.0.1 and a free port from a daemon thread; returns (server, url)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host!s}:{port}/hello"


def write_sample_file(path: Path, size_mib: int = 8) -> Path:
    """A file of random bytes for hash_file to read."""
    with open(path, "wb") as handle:
        for _ in range(size_mib):
            handle.write(os.urandom(1 << 20))
    return path
