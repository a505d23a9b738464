"""A throwaway PostgreSQL server for tests: Debian's ``postgresql``, ``initdb`` into a temporary
directory as the ``postgres`` user, listening on a free loopback port, stopped by PID."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis_server import free_port

START_TIMEOUT_S = 30.0


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed or would not start here; the message says why."""


@dataclass
class PostgresServer:
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    user: str = "postgres"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by its PID), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.datadir.parent, ignore_errors=True)


def bin_dir() -> Path:
    """Debian puts the server's programs under /usr/lib/postgresql/<version>/bin."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
        "apt-get install -y postgresql"
    )


def _run_as() -> tuple[str | None, int | None]:
    """As root, the server runs as ``postgres`` (it refuses root); otherwise as ourselves."""
    if os.geteuid() != 0:
        return None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no 'postgres' user") from None
    return entry.pw_name, entry.pw_gid


def start_postgres() -> PostgresServer:
    """Start a server with trust authentication on 127.0.0.1; raises PostgresUnavailable."""
    binaries = bin_dir()
    user, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="celeriac-pg-"))
    datadir = root / "data"
    if user is not None:
        os.chown(root, pwd.getpwnam(user).pw_uid, gid or -1)
    initdb = subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        user=user,
        group=gid,
        check=False,
    )
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(
            f"initdb failed ({initdb.returncode}): {initdb.stderr.decode(errors='replace')}"
        )
    port = free_port()
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(datadir),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(root),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=40",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=user,
            group=gid,
        )
    if user is not None:
        with contextlib.suppress(OSError):
            os.chown(log_path, pwd.getpwnam(user).pw_uid, gid or -1)
    server = PostgresServer(port, datadir, process, log_path)
    try:
        _wait_ready(server)
    except PostgresUnavailable:
        server.stop()
        raise
    return server


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited ({server.process.returncode}): "
                + server.log_path.read_text(errors="replace")[-2000:]
            )
        try:
            with psycopg.connect(server.dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"postgres did not accept connections in {START_TIMEOUT_S:.0f} s: {exc}"
                ) from exc
        time.sleep(0.1)
