"""The worker's metrics port: ``/metrics``, ``/healthz`` and ``/readyz`` over plain HTTP.

A small threaded server on a daemon thread of the process that started the worker (the
prefork manager, which runs no user code), so a busy or stuck consumer cannot keep it from
answering. The answers never wait on the broker, except ``/metrics``' queue lengths.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import ConfigurationError
from .health import Readiness

logger = logging.getLogger(__name__)


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition text of *registry* and its content type (for any web framework)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class HealthServer:
    def __init__(
        self,
        address: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        before_scrape: Callable[[], None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.readiness = readiness
        self.before_scrape = before_scrape
        handler = _handler_for(self)
        try:
            self.httpd = ThreadingHTTPServer((address, port), handler)
        except OSError as exc:
            raise ConfigurationError(
                f"--metrics-port {port} on {address}: cannot listen ({exc.strerror or exc}); "
                "choose a free port, or stop what uses it"
            ) from None
        self.httpd.daemon_threads = True
        self.address, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="celeriac-metrics-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        route = path.split("?", 1)[0].rstrip("/") or "/"
        if route == "/metrics":
            self.before_scrape()
            body, content_type = render_metrics(self.registry)
            return 200, body, content_type
        if route == "/healthz":
            return 200, b"ok\n", "text/plain; charset=utf-8"
        if route == "/readyz":
            ready = self.readiness()
            return (200 if ready.ready else 503), ready.text().encode(), "text/plain; charset=utf-8"
        text = f"no page {route}; try /metrics, /healthz or /readyz\n"
        return 404, text.encode(), "text/plain; charset=utf-8"


def _handler_for(server: HealthServer) -> Any:
    class Handler(BaseHTTPRequestHandler):
        server_version = "celeriac-metrics"

        def do_GET(self) -> None:
            try:
                status, body, content_type = server.answer(self.path)
            except Exception:
                logger.exception("metrics server: %s failed", self.path)
                status, body, content_type = 500, b"internal error\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics server: " + format, *args)

    return Handler
