"""The worker's logging set-up, with Celery's settings and Celery's default formats.

``setup_worker_logging`` is called once by the command before the worker starts:

- ``setup_logging`` receivers connected: they own logging, celeriac configures nothing;
- otherwise the root logger gets one handler (stderr or ``--logfile``) formatted with
  ``worker_log_format``; with ``worker_hijack_root_logger = False`` a root logger that already
  has handlers is left as the user set it up;
- the task loggers (children of ``celeriac.task``, see ``get_task_logger``) get their own
  handler formatted with ``worker_task_log_format``, which may use ``%(task_name)s`` and
  ``%(task_id)s``;
- ``worker_redirect_stdouts`` turns ``print()`` into log lines at
  ``worker_redirect_stdouts_level``.

Each record is written with one ``write()`` on a descriptor opened with ``O_APPEND``, so the
lines of prefork children that share the manager's log file never interleave mid-line.
"""

from __future__ import annotations

import contextvars
import logging
import multiprocessing
import os
import stat
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from .. import signals
from ..errors import ConfigurationError
from ..task import _current_request  # the request running in this slot (thread, greenlet)

if TYPE_CHECKING:
    from ..app import Celeriac

#: Celery's default formats (``worker_log_format``, ``worker_task_log_format``)
DEFAULT_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
DEFAULT_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
)
#: the parent of every task logger (``get_task_logger`` hangs its loggers under it)
TASK_LOGGER = "celeriac.task"
#: where ``print()`` in a task goes when ``worker_redirect_stdouts`` is on
REDIRECT_LOGGER = "celeriac.redirected"

_COLORS = {
    logging.DEBUG: "\033[34m",  # blue
    logging.WARNING: "\033[33m",  # yellow
    logging.ERROR: "\033[31m",  # red
    logging.CRITICAL: "\033[35m",  # magenta
}
_RESET = "\033[0m"


def parse_level(loglevel: str | int) -> int:
    """``"info"``, ``"INFO"`` or ``20`` → 20, with a clear error for anything else."""
    if isinstance(loglevel, int):
        return loglevel
    numeric = logging.getLevelName(str(loglevel).upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(
            f"unknown log level {loglevel!r}; use debug, info, warning, error or critical"
        )
    return numeric


class WorkerFormatter(logging.Formatter):
    """A formatter that colours the whole line by level when asked to."""

    def __init__(self, fmt: str, *, use_color: bool = False) -> None:
        super().__init__(fmt)
        self.use_color = use_color

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        color = _COLORS.get(record.levelno) if self.use_color else None
        return f"{color}{line}{_RESET}" if color else line


class TaskFormatter(WorkerFormatter):
    """Fills ``%(task_name)s`` and ``%(task_id)s`` from the task running in this slot."""

    def format(self, record: logging.LogRecord) -> str:
        add_task_fields(record)
        return super().format(record)


def add_task_fields(record: logging.LogRecord) -> None:
    """Put ``task_name`` and ``task_id`` of the task running in this slot on *record* ("???"
    outside a task, unless the record has them already)."""
    request = _current_request.get()
    if request is not None and request.id:
        record.task_name = request.task
        record.task_id = request.id
    else:
        record.__dict__.setdefault("task_name", "???")
        record.__dict__.setdefault("task_id", "???")


# how long a child waits for its turn on a pipe: a slow reader (a full pipe) can hold the
# writer with the turn for seconds; only a child killed mid-write holds it for good
TURN_WAIT_S = 10.0


def _is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


_turn_locks: dict[int, Any] = {}


def _turns_for(fd: int) -> Any:
    """One lock per descriptor, so the root's and the task loggers' handlers take turns too."""
    lock = _turn_locks.get(fd)
    if lock is None:
        lock = _turn_locks[fd] = multiprocessing.Lock()
    return lock


class LineHandler(logging.Handler):
    """Writes each record whole with one ``write()`` on a raw descriptor.

    The descriptor is inherited by prefork children; a file is opened with ``O_APPEND``, so
    every child's line lands at the end in one piece (no buffer splits a long line). On a
    pipe or terminal, where a write longer than ``PIPE_BUF`` is not atomic, the children
    write one at a time.
    """

    def __init__(self, logfile: str | None = None) -> None:
        super().__init__()
        self.logfile = logfile
        if logfile is None:
            stream = sys.__stderr__
            if stream is None:
                raise ConfigurationError("no stderr to log to; pass a logfile (--logfile)")
            self.fd = stream.fileno()
            self._owns_fd = False
        else:
            self.fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._owns_fd = True
        # a pipe or a terminal takes at most PIPE_BUF bytes in one piece, and a short line
        # can land inside a longer one: prefork children take turns through a lock that the
        # fork shares
        self._turns: Any = None if _is_regular_file(self.fd) else _turns_for(self.fd)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if self._turns is not None:
                self._write_in_turn(data)
            else:
                self._write(data)
        except Exception:
            self.handleError(record)

    def _write(self, data: bytes) -> None:
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def _write_in_turn(self, data: bytes) -> None:
        # bounded: a child killed while holding the lock must not silence the others
        got = self._turns.acquire(timeout=TURN_WAIT_S)
        try:
            self._write(data)
        finally:
            if got:
                self._turns.release()

    def close(self) -> None:
        with self.lock or threading.Lock():
            if self._owns_fd and self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        super().close()


class StdoutsToLogger:
    """A stand-in for ``sys.stdout``/``sys.stderr``: what is written becomes log records, one
    per non-blank line (as Celery's proxy: ``print("a", "b")`` writes, and logs, twice)."""

    def __init__(self, logger: logging.Logger, level: int, original: TextIO | None) -> None:
        self.logger = logger
        self.level = level
        self.original = original
        self.encoding = "utf-8"
        self.errors = "strict"

    def write(self, text: str) -> int:
        if _writing.get():  # a handler that prints: do not loop
            return len(text)
        token = _writing.set(True)
        try:
            for line in text.splitlines():
                if line.strip():
                    self.logger.log(self.level, "%s", line.rstrip())
        finally:
            _writing.reset(token)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # nothing is held back; and at exit (under gevent too) flushing must not fail
        return None

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # code writing at the descriptor level (faulthandler) reaches the real stream
        if self.original is None:
            raise OSError("the redirected stream has no file descriptor")
        return self.original.fileno()

    @property
    def closed(self) -> bool:
        return False


# a context variable, not threading.local: gevent patches the latter, and it fails while
# the interpreter finalizes (when Python flushes sys.stdout one last time)
_writing: contextvars.ContextVar[bool] = contextvars.ContextVar("celeriac_redirect", default=False)


def supports_color(colorize: bool | None, logfile: str | None) -> bool:
    """Celery's rule: colour only on a terminal, never in a log file."""
    if colorize is False:
        return False
    stream = sys.__stderr__
    return logfile is None and stream is not None and stream.isatty()


def setup_worker_logging(
    app: Celeriac,
    *,
    loglevel: str | int,
    logfile: str | None = None,
    colorize: bool | None = None,
    hostname: str | None = None,
) -> None:
    """Configure logging for a worker process, as ``celery worker`` does.

    *logfile* is a path already expanded by the command, or None for stderr.
    """
    level = parse_level(loglevel)
    conf = app.conf
    fmt = conf.worker_log_format or DEFAULT_LOG_FORMAT
    task_fmt = conf.worker_task_log_format or DEFAULT_TASK_LOG_FORMAT
    if colorize is None:
        colorize = conf.worker_log_color
    color = supports_color(colorize, logfile)
    # redis-py's own debug chatter (e.g. optional handshake probes) is not ours to show
    logging.getLogger("redis").setLevel(max(level, logging.INFO))
    if signals.setup_logging.receivers:
        signals.setup_logging.send(
            sender=None, loglevel=level, logfile=logfile, format=fmt, colorize=color
        )
        return
    root = logging.getLogger()
    task_logger = logging.getLogger(TASK_LOGGER)
    redirected = logging.getLogger(REDIRECT_LOGGER)
    if conf.worker_hijack_root_logger:
        for logger in (root, logging.getLogger("celeriac"), task_logger, redirected):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
    if not _has_handler(root):
        handler = LineHandler(logfile)
        handler.setFormatter(WorkerFormatter(fmt, use_color=color))
        root.addHandler(handler)
    root.setLevel(level)
    common = {"loglevel": level, "logfile": logfile, "colorize": color}
    signals.after_setup_logger.send(sender=None, logger=root, format=fmt, **common)
    if not _has_handler(task_logger):
        task_handler = LineHandler(logfile)
        task_handler.setFormatter(TaskFormatter(task_fmt, use_color=color))
        task_logger.addHandler(task_handler)
    task_logger.setLevel(level)
    task_logger.propagate = False
    signals.after_setup_task_logger.send(sender=None, logger=task_logger, format=task_fmt, **common)
    if conf.worker_redirect_stdouts:
        redirect_stdouts(conf.worker_redirect_stdouts_level)


def redirect_stdouts(loglevel: str | int = "WARNING") -> None:
    """Send ``print()`` (stdout and stderr) to the ``celeriac.redirected`` logger."""
    level = parse_level(loglevel)
    logger = logging.getLogger(REDIRECT_LOGGER)
    stdout: Any = StdoutsToLogger(logger, level, sys.__stdout__)
    stderr: Any = StdoutsToLogger(logger, level, sys.__stderr__)
    sys.stdout = stdout
    sys.stderr = stderr


def _has_handler(logger: logging.Logger) -> bool:
    return any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
