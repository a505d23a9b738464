"""Tasks that replace themselves (``Task.replace``) or grow their chord (``add_to_chord``),
defined by one function on any app with Celery's API: the celeriac worker imports this
module, the Celery worker imports celery_replace_tasks (the same tasks on a Celery app).

The replacing tasks (``rep.to_*``, ``rep.grow``) go to the ``replacer`` queue, everything
else to the default one, so an interop test can have one implementation's worker replace
and the other's run what the replacement sends."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from celeriac import Celery

ROUTES = {"rep.to_*": {"queue": "replacer"}, "rep.grow*": {"queue": "replacer"}}


@dataclass(frozen=True)
class ReplaceTasks:
    add: Any
    tsum: Any
    identity: Any
    fail: Any
    nesting: Any
    to_task: Any
    to_chain: Any
    to_group: Any
    to_chord: Any
    to_failure: Any
    to_replacer: Any
    to_nesting: Any
    to_nothing: Any
    to_linked: Any
    grow: Any
    grow_lazy: Any


def define_tasks(app: Any) -> ReplaceTasks:
    """Register the tasks on *app* (celeriac or Celery) and return them."""
    implementation = type(app).__module__.split(".")[0]
    task = functools.partial(app.task, shared=False) if implementation == "celery" else app.task
    canvas: Any = __import__(implementation)  # chain, group, chord from the same package
    add, tsum, identity, fail, nesting = _plain(task)

    @task(name="rep.to_task", bind=True)
    def to_task(self: Any, x: int) -> Any:
        return self.replace(add.s(x, 1))

    @task(name="rep.to_chain", bind=True)
    def to_chain(self: Any, x: int) -> Any:
        return self.replace(canvas.chain(add.s(x, 1), add.s(10)))

    @task(name="rep.to_group", bind=True)
    def to_group(self: Any, x: int) -> Any:
        return self.replace(canvas.group(add.s(x, 1), add.s(x, 2)))

    @task(name="rep.to_chord", bind=True)
    def to_chord(self: Any, x: int) -> Any:
        return self.replace(canvas.chord([add.s(x, 1), add.s(x, 2)], tsum.s()))

    @task(name="rep.to_failure", bind=True)
    def to_failure(self: Any, message: str) -> Any:
        return self.replace(fail.si(message))

    @task(name="rep.to_replacer", bind=True)
    def to_replacer(self: Any) -> Any:
        """Replaced by a task that replaces itself too: nesting 2 at the end."""
        return self.replace(to_nesting.si())

    @task(name="rep.to_nesting", bind=True)
    def to_nesting(self: Any) -> Any:
        return self.replace(nesting.si())

    @task(name="rep.to_nothing", bind=True)
    def to_nothing(self: Any, what: str) -> Any:
        """Bad input: replace() with something that is not a signature."""
        return self.replace(what)

    @task(name="rep.to_linked", bind=True)
    def to_linked(self: Any, x: int, callback_id: str, errback_id: str) -> Any:
        """Replaced by a signature with links of its own: ``add(x, 1)`` whose callback
        (``identity``) runs under *callback_id`` and errback under *errback_id*."""
        callback = identity.s().set(task_id=callback_id)
        errback = identity.s().set(task_id=errback_id)
        return self.replace(add.s(x, 1).set(link=[callback], link_error=[errback]))

    @task(name="rep.grow", bind=True)
    def grow(self: Any, x: int) -> int:
        """A chord header task that adds one more part, ``add(x, 100)``, to its chord."""
        self.add_to_chord(add.si(x, 100))
        return x

    @task(name="rep.grow_lazy", bind=True)
    def grow_lazy(self: Any, x: int) -> int:
        """``add_to_chord(lazy=True)``: the added ``add(x, 200)`` is sent here."""
        self.add_to_chord(add.si(x, 200), lazy=True).delay()
        return x

    return ReplaceTasks(
        add,
        tsum,
        identity,
        fail,
        nesting,
        to_task,
        to_chain,
        to_group,
        to_chord,
        to_failure,
        to_replacer,
        to_nesting,
        to_nothing,
        to_linked,
        grow,
        grow_lazy,
    )


def _plain(task: Any) -> tuple[Any, ...]:
    @task(name="rep.add")
    def add(x: int, y: int) -> int:
        return x + y

    @task(name="rep.tsum")
    def tsum(values: list[Any]) -> int:
        return sum(_numbers(values))

    @task(name="rep.identity")
    def identity(value: Any) -> Any:
        return value

    @task(name="rep.fail")
    def fail(message: str, *args: Any) -> None:
        raise ValueError(message)

    @task(name="rep.nesting", bind=True)
    def nesting(self: Any) -> int:
        return int(self.request.replaced_task_nesting or 0)

    return add, tsum, identity, fail, nesting


def _numbers(values: Any) -> list[int]:
    if isinstance(values, (list, tuple)):
        return [n for value in values for n in _numbers(value)]
    return [int(values)]


app = Celery("replace_tasks")
app.conf.task_routes = ROUTES
tasks = define_tasks(app)
