"""Shared test support: a real redis-server, worker subprocesses, task modules."""
