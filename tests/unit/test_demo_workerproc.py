"""workerproc.py: the cleanup cannot be cut short, and the worker command is the seed's."""

from __future__ import annotations

import os
import signal

import pytest

from celeriac.demo.workerproc import sigint_deferred, worker_command


def test_ctrl_c_during_cleanup_is_held_until_the_cleanup_ends() -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt), sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        finished.append("cleanup ran to the end")
    assert finished == ["cleanup ran to the end"]


def test_handlers_are_restored_after_the_cleanup() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint_deferred():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_worker_command_is_the_seed_s_with_the_pool_asked_for() -> None:
    command = worker_command("gevent", 100)
    assert command[1:6] == ["-m", "celeriac", "-A", "celeriac.demo.seed_app", "worker"]
    assert "--pool=gevent" in command
    assert "--concurrency=100" in command
    assert "--queues=basic,advanced,realworld" in command
