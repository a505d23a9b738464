"""One SQLite connection per process, for the embedded broker and result backend.

SQLite is safe across the processes of one machine when each process opens its own
connection and the database runs in WAL mode: readers never block the writer, and writers
take turns through ``busy_timeout``. A connection carried across ``fork()`` breaks SQLite's
locking (https://sqlite.org/howtocorrupt.html#fork), so every use checks the pid: a forked
child opens a connection of its own and neither uses nor closes the one it inherited.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import CeleriacError, ConfigurationError
from ..urls import safe_url

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
DEFAULT_BUSY_TIMEOUT_S = 30.0
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

# Every connection this process (or a parent before fork) opened and has not closed. In a
# forked child the parent's entries stay here forever, so the garbage collector never runs
# sqlite3_close on them: closing in the child can drop locks the parent still relies on.
_OPEN: list[tuple[int, sqlite3.Connection]] = []
_OPEN_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    # a lock held by another parent thread at fork time would never be released here
    global _OPEN_LOCK
    _OPEN_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def database_path(url: str, *, role: str, allow_memory: bool) -> str:
    """The file an ``sqlite:///path`` URL names, made absolute now.

    Three slashes start a path relative to the working directory, four an absolute one
    (SQLAlchemy's spelling). Resolving once keeps every process of a worker on the same
    file even if one of them changes directory.
    """
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "sqlite" or not sep:
        raise ConfigurationError(
            f"{safe_url(url)!r} is not an sqlite:// URL; use sqlite:///path/to/file"
        )
    rest, _, query = rest.partition("?")
    if query:
        raise ConfigurationError(
            f"the SQLite {role} URL {safe_url(url)!r} takes no query options; "
            f"set them in broker_transport_options instead"
        )
    if rest in ("", "/", MEMORY, "/" + MEMORY):
        if allow_memory:
            return MEMORY
        raise ConfigurationError(
            f"{url!r} cannot be the {role}: an in-memory SQLite database lives inside one "
            f"connection of one process, so a worker (and each of its prefork children) would "
            f"never see what a client publishes. Use memory:// for single-process tests, or a "
            f"file such as sqlite:///celeriac.sqlite3"
        )
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"{safe_url(url)!r} names a host; SQLite is a local file: use sqlite:///relative/path "
            f"or sqlite:////absolute/path"
        )
    return os.path.abspath(rest[1:])


class Database:
    """This process's connection to one database file, shared by its threads under a lock.

    The connection opens lazily, so an object built before a fork never opens anything
    that the child would inherit.
    """

    def __init__(
        self,
        path: str,
        *,
        role: str,
        error: type[CeleriacError],
        create_schema: Callable[[sqlite3.Connection], None],
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.role = role
        self.busy_timeout_s = busy_timeout_s
        self._error = error
        self._create_schema = create_schema
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self.opened_by_pid: int | None = None  # the process that opened the current connection

    @property
    def is_memory(self) -> bool:
        return self.path == MEMORY

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            # forked child: the parent's connection and lock are not ours (see _OPEN)
            self._lock = threading.RLock()
            self._conn = None
            self.opened_by_pid = None
            self._pid = pid

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
            self.opened_by_pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,  # autocommit: transactions are the explicit BEGINs below
            check_same_thread=False,  # shared by this process's threads under self._lock
        )
        with _OPEN_LOCK:
            _OPEN.append((os.getpid(), conn))
        try:
            if not self.is_memory:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
                if mode.lower() != "wal":
                    raise self._error(
                        f"the SQLite {self.role} database {self.path} cannot use WAL mode "
                        f"(got {mode!r}); put it on a local disk, not a network share"
                    )
                # WAL + NORMAL survives any process crash; only a power cut can lose the
                # last commits, and it saves an fsync per transaction
                conn.execute("PRAGMA synchronous=NORMAL")
                # after a checkpoint, shrink the WAL back instead of keeping its peak size
                conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            conn.execute("BEGIN IMMEDIATE")
            self._create_schema(conn)
            conn.execute("COMMIT")
        except BaseException:
            _forget(conn)
            conn.close()
            raise
        logger.debug("opened SQLite %s database %s in pid %d", self.role, self.path, os.getpid())
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for autocommit reads (each statement sees the latest commit)."""
        self._check_fork()
        with self._lock:
            try:
                yield self._connection()
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: the one writer of the whole file until commit."""
        self._check_fork()
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failure(exc) from exc

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file.

        It reads SQLite's shared-memory index, not the file, so polling it is cheap.
        """
        with self.read() as conn:
            return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def _failure(self, exc: sqlite3.Error) -> CeleriacError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            advice = (
                f"another process held the write lock for more than {self.busy_timeout_s:g}s; "
                f"raise the 'busy_timeout' transport option, or use Redis for heavy load"
            )
        else:
            advice = "check that the file and its directory exist, are writable and on a local disk"
        return self._error(f"SQLite {self.role} at {self.path} failed: {text}; {advice}")

    def close(self) -> None:
        if self._pid != os.getpid():
            self._conn = None  # the parent's: never close it here
            return
        with self._lock:
            conn, self._conn = self._conn, None
            self.opened_by_pid = None
        if conn is not None:
            _forget(conn)
            conn.close()


def _forget(conn: sqlite3.Connection) -> None:
    with _OPEN_LOCK:
        _OPEN[:] = [(pid, c) for pid, c in _OPEN if c is not conn]
