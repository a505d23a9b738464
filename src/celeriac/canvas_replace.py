"""``Task.replace`` and ``Task.add_to_chord``: a running task changes the workflow it is in.

Replacing sends a new signature in the task's place. The replacement's final task takes the
replaced task's id (so the caller's ``AsyncResult`` gets the final value), its callbacks and
errbacks, its place in a group or chord header (``group_id``, ``group_index``, ``chord``),
its root, and the rest of its chain, which runs after the replacement. Each replacement
counts one more ``replaced_task_nesting``. The replaced task then raises ``Ignore``: the
worker stores nothing under its id, the replacement will.

A group replacement becomes a chord whose body is ``celery.accumulate`` (Celery's way), so
there is one final task to carry the id and the links; its value is the group's list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .canvas import Signature, chain, group, maybe_signature
from .errors import Ignore, ImproperlyConfigured

if TYPE_CHECKING:
    from .task import Request, Task

ACCUMULATE = "celery.accumulate"


def replace_task(task: Task, sig: Any) -> Any:
    """Send *sig* in place of the running *task* and raise Ignore (eager: run it here and
    return its value)."""
    request = task.request
    if request.called_directly:
        raise ImproperlyConfigured(
            f"{task.name}.replace() was called outside a worker: replace only works while "
            f"the task runs in a worker (or with apply()); call the signature directly instead"
        )
    replacement = _checked(task, sig)
    if isinstance(replacement, group):
        replacement = replacement | _accumulate(task)
    elif isinstance(replacement, chain) and isinstance(replacement.tasks[-1], group):
        steps = list(replacement.tasks)
        steps[-1] = steps[-1] | _accumulate(task)
        replacement = chain(*steps, app=task.app, **replacement.options)
    for callback in request.callbacks or ():
        replacement.link(maybe_signature(callback, app=task.app))
    for errback in request.errbacks or ():
        replacement.link_error(maybe_signature(errback, app=task.app))
    nesting = int(getattr(request, "replaced_task_nesting", 0) or 0) + 1
    if isinstance(replacement, chain):
        # the chain's own callbacks belong to its last step only
        last_links = replacement.options.pop("link", None)
        for callback in _as_list(last_links):
            replacement.tasks[-1].link(callback)
        for step in replacement.tasks:
            step.set(replaced_task_nesting=nesting)
    replacement.freeze(request.id)
    replacement.set(**_place_of(request), replaced_task_nesting=nesting)
    for step in reversed(request.chain or ()):
        following: Signature = maybe_signature(step, app=task.app, clone=True)
        following.set(replaced_task_nesting=nesting)
        replacement = replacement | following
    return task.on_replace(replacement)


def send_replacement(task: Task, replacement: Signature) -> Any:
    """``Task.on_replace``'s default: run it here in an eager call, else send it and end
    the replaced task with Ignore."""
    if task.request.is_eager:
        return replacement.apply().get()
    replacement.delay()
    raise Ignore("Replaced by new task")


def add_to_chord(task: Task, sig: Any, lazy: bool = False) -> Any:
    """Make *sig* one more part of the chord *task* belongs to, and send it (unless
    *lazy*: then return it frozen, for the caller to send)."""
    request = task.request
    if not request.chord or not request.group:
        raise ValueError(
            f"{task.name}[{request.id}] is not a member of any chord: add_to_chord only works "
            f"in a task of a chord's header"
        )
    part = _as_sig(task, sig)
    part.set(
        group_id=request.group,
        group_index=request.group_index,
        chord=request.chord,
        root_id=request.root_id,
    )
    part.freeze()
    backend: Any = task.app.backend
    backend.add_to_chord(request.group)
    if lazy:
        return part
    return part.delay()


def _checked(task: Task, sig: Any) -> Signature:
    replacement = _as_sig(task, sig).clone()
    if "chord" in replacement.options:
        raise ImproperlyConfigured(
            "a signature replacing a task must not be part of a chord: give replace() the "
            "signature without its chord option"
        )
    if isinstance(replacement, chain) and not replacement.tasks:
        raise ImproperlyConfigured("cannot replace a task with an empty chain: add a step")
    if isinstance(replacement, group) and not replacement.tasks:
        raise ImproperlyConfigured("cannot replace a task with an empty group: add a member")
    return replacement


def _as_sig(task: Task, sig: Any) -> Signature:
    if isinstance(sig, Signature):
        return sig
    if isinstance(sig, Mapping) and "task" in sig:
        found: Signature = maybe_signature(sig, app=task.app)
        return found
    raise ImproperlyConfigured(
        f"{task.name}: replace() and add_to_chord() take a signature (task.s(...), chain, "
        f"group or chord), got {type(sig).__name__}: {sig!r}"
    )


def _accumulate(task: Task) -> Signature:
    return Signature(ACCUMULATE, (), {"index": 0}, app=task.app)


def _place_of(request: Request) -> dict[str, Any]:
    """Where the replaced task stood: its chord, group and root go to the replacement."""
    place: dict[str, Any] = {
        "chord": request.chord,
        "group_id": request.group,
        "group_index": request.group_index,
        "root_id": request.root_id,
    }
    return {key: value for key, value in place.items() if value is not None}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
