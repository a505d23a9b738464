"""Running as a service: pidfiles, ``--detach``, ``--uid``/``--gid``, ``--umask``.

Everything that can fail for a reason the user must fix (a live pidfile, a directory that
cannot be written, an unknown user) is checked in the starting process, before any fork,
so the error reaches the terminal (or the init script) with a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import select
import sys
import time
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from ..pids import pid_alive

DETACH_READY_TIMEOUT_S = 60.0


def parse_umask(value: str) -> int:
    """``--umask 0022``/``022``/``22``: octal, as in the shell and Celery."""
    text = value.strip()
    try:
        mask = int(text, 8)
    except ValueError:
        mask = -1
    if not 0 <= mask <= 0o777:
        raise ConfigurationError(
            f"--umask {value!r} is not an octal file mode mask; use e.g. --umask=0022"
        )
    return mask


def resolve_uid(value: str) -> int:
    """A user name or numeric id -> the numeric id."""
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise ConfigurationError(
            f"--uid {value!r}: no such user on this machine; give an existing user name "
            "or a numeric user id"
        ) from None


def resolve_gid(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ConfigurationError(
            f"--gid {value!r}: no such group on this machine; give an existing group name "
            "or a numeric group id"
        ) from None


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become *uid*/*gid* (group first: a process that gave up root cannot change it)."""
    if uid is None and gid is None:
        return
    if uid is not None and gid is None:
        with contextlib.suppress(KeyError):
            gid = pwd.getpwuid(uid).pw_gid
    try:
        if gid is not None and gid != os.getgid():
            os.setgid(gid)
            with contextlib.suppress(PermissionError):
                os.setgroups([gid])
        if uid is not None and uid != os.getuid():
            with contextlib.suppress(KeyError, PermissionError):
                os.initgroups(pwd.getpwuid(uid).pw_name, gid if gid is not None else os.getgid())
            os.setuid(uid)
    except PermissionError:
        raise ConfigurationError(
            f"cannot switch to uid {uid} / gid {gid}: only root may change user or group; "
            "start the worker as root (it drops to --uid/--gid) or leave these options out"
        ) from None


def read_pid(path: str) -> int | None:
    """The pid in a pidfile; None when it is missing, empty or not a number."""
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read(64).strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"cannot read the pidfile {path}: {exc.strerror}") from None
    return int(text) if text.isdigit() and int(text) > 0 else None


def check_writable_file(path: str, option: str) -> None:
    """Fail now, with a clear message, if *path* could not be created or appended to."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"{option} {path}: the directory {directory} does not exist; create it "
            "(and give the worker's user write access) or choose another path"
        )
    if os.path.exists(path):
        ok = os.access(path, os.W_OK)
    else:
        ok = os.access(directory, os.W_OK | os.X_OK)
    if not ok:
        raise ConfigurationError(
            f"{option} {path}: permission denied; give the worker's user write access to "
            f"{directory} or choose another path"
        )


@dataclass
class Pidfile:
    """A pidfile created exclusively; a stale one (its pid is gone) is replaced."""

    path: str
    owned: bool = field(default=False, init=False)

    def check(self) -> None:
        """Before starting: refuse when a live process holds the pidfile."""
        check_writable_file(self.path, "--pidfile")
        pid = read_pid(self.path)
        if pid is not None and pid != os.getpid() and pid_alive(pid):
            raise self._held_by(pid)

    def acquire(self) -> None:
        """Write our pid to a file of our own, then link it to the pidfile's name: the link
        fails if the name exists, so two workers never both hold it, and no reader ever
        sees the pidfile empty."""
        staged = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(staged, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            for _ in range(3):
                try:
                    os.link(staged, self.path)
                except FileExistsError:
                    pid = read_pid(self.path)
                    if pid is not None and pid != os.getpid() and pid_alive(pid):
                        raise self._held_by(pid) from None
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)  # stale: its process is gone
                    continue
                self.owned = True
                return
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the pidfile {self.path}: {exc.strerror}; choose a "
                "--pidfile in a directory the worker's user can write"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(staged)
        raise ConfigurationError(f"cannot create the pidfile {self.path}: it keeps reappearing")

    def release(self) -> None:
        """Remove the pidfile if it is still ours."""
        if not self.owned:
            return
        self.owned = False
        with contextlib.suppress(ConfigurationError):
            if read_pid(self.path) == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)

    def _held_by(self, pid: int) -> ConfigurationError:
        return ConfigurationError(
            f"the pidfile {self.path} belongs to process {pid}, which is still running: "
            f"a worker with this pidfile is already up. Stop it first (kill -TERM {pid}) "
            "or give this worker another --pidfile"
        )


class Detached:
    """The detached daemon's line back to the command that started it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def ready(self) -> None:
        self._send(b"ok")

    def fail(self, message: str) -> None:
        self._send(message.encode("utf-8", "replace") or b"failed")

    def _send(self, data: bytes) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.write(fd, data)
        with contextlib.suppress(OSError):
            os.close(fd)


def detach(logfile: str | None) -> Detached:
    """Double fork into a new session, stdio to the logfile (or /dev/null).

    Returns in the daemon. The starting process waits until the daemon says it is ready
    (pidfile written, logging set up) or failed, then exits 0 or 1 with its message."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        _wait_for_daemon(read_fd)  # never returns
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    _redirect_stdio(logfile)
    return Detached(write_fd)


def _wait_for_daemon(read_fd: int) -> None:
    deadline = time.monotonic() + DETACH_READY_TIMEOUT_S
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sys.stderr.write("error: the detached worker did not report ready in time\n")
            os._exit(1)
        readable, _, _ = select.select([read_fd], [], [], remaining)
        if not readable:
            continue
        try:
            chunk = os.read(read_fd, 4096)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not chunk:
            break
        chunks.append(chunk)
    message = b"".join(chunks).decode("utf-8", "replace")
    if message == "ok":
        os._exit(0)
    sys.stderr.write(f"error: {message or 'the detached worker exited during start-up'}\n")
    sys.stderr.flush()
    os._exit(1)


def _redirect_stdio(logfile: str | None) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    target = devnull
    if logfile:
        target = os.open(logfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(devnull, 0)
    os.dup2(target, 1)
    os.dup2(target, 2)
    for fd in {devnull, target}:
        if fd > 2:
            os.close(fd)
