"""Real work on the ``realworld`` queue, with no network beyond this machine.

CPU-bound (hashing a file, a pure-Python loop) and I/O-bound (a wait, an HTTP GET against
the loopback server ``local_server.py`` starts, an e-mail written to a local outbox). The
``async def`` variant is for ``--pool=asyncio``; ``time.sleep`` is fine under gevent and
eventlet, which patch it to let other greenlets run.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from celery_app import app

OUTBOX = Path(os.environ.get("SEED_OUTBOX", Path(tempfile.gettempdir()) / "seed-outbox"))


@app.task
def hash_file(path: str) -> dict[str, Any]:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"path": path, "bytes": size, "sha256": digest.hexdigest(), "pid": os.getpid()}


@app.task
def cpu_bound(iterations: int) -> dict[str, Any]:
    """Pure-Python arithmetic: holds the GIL, so only processes run it in parallel."""
    started = time.thread_time()
    total = 0
    for i in range(iterations):
        total = (total + i * i) % 1_000_003
    return {"checksum": total, "cpu_s": round(time.thread_time() - started, 3), "pid": os.getpid()}


@app.task
def io_bound(seconds: float) -> dict[str, Any]:
    """Wait as blocking I/O does."""
    time.sleep(seconds)
    return {"slept_s": seconds, "pid": os.getpid(), "thread": threading.get_native_id()}


@app.task
async def io_bound_async(seconds: float) -> dict[str, Any]:
    """The same wait as a coroutine, for ``--pool=asyncio``."""
    await asyncio.sleep(seconds)
    return {"slept_s": seconds, "pid": os.getpid(), "thread": threading.get_native_id()}


def _require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"this example only fetches loopback URLs, got {url!r}")


@app.task
def fetch_url(url: str) -> dict[str, Any]:
    """HTTP GET against the example's own server on 127.0.0.1."""
    _require_loopback(url)
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return {"status": response.status, "bytes": len(body), "pid": os.getpid()}


@app.task
def send_email(to: str, subject: str, body: str = "") -> dict[str, Any]:
    """The seed's send_email, delivered to a local outbox directory instead of an SMTP server."""
    message = EmailMessage()
    message["From"] = "seed@localhost"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body or subject)
    OUTBOX.mkdir(parents=True, exist_ok=True)
    path = OUTBOX / f"{time.time_ns()}-{os.getpid()}.eml"
    path.write_bytes(bytes(message))
    return {"to": to, "file": str(path), "pid": os.getpid()}
