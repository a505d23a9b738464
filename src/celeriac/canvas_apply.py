"""Sending a canvas: every task id is chosen here, then the first messages go out.

A chain sends its first step with the rest in the message's ``chain`` field, last step
first. A group sends each member with ``group``/``group_index``. A chord starts its counter
(``set_chord_size``) and then sends its header with the body in each message's ``chord``
field. Later steps get their ids now (``options["task_id"]``), so ``get()`` works on the
last one, as with Celery (shared/spec/celery-wire-protocol.md §3, §8).

Before sending, a chain is put in the shape Celery's workers expect: nested chains are
spliced in, a group followed by a step becomes a chord, and a chord whose body is a chain
keeps only the body's first task (the rest follow as chain steps), so the header messages
do not each carry the whole remainder.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import protocol
from .canvas import IMMUTABLE_OPTIONS, Signature, as_plain, chain, chord, group
from .result import AsyncResult, GroupResult
from .task import add_to_parent_trail

if TYPE_CHECKING:
    from .app import Celeriac

logger = logging.getLogger(__name__)

AnyResult = AsyncResult | GroupResult
# options a chord keeps for its body (and for the canvas around it), not for the header
_BODY_ONLY = frozenset({"chain", "chord", "group_id", "group_index"})
# options that travel as message headers (header_options), never as send_task options
_IN_HEADERS = frozenset({"replaced_task_nesting", "stamped_headers", "stamps"})


def send(
    sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> AsyncResult:
    """Publish one task message for a plain signature."""
    app = sig.app
    wire = wire_options(options, sig.task)
    add_to_parent = bool(wire.pop("add_to_parent", True))
    task = app.tasks.get(sig.task)
    if task is not None:
        return task.apply_async(args, kwargs, add_to_parent=add_to_parent, **wire)
    result = app.send_task(sig.task, args, kwargs, **wire)
    if add_to_parent:
        add_to_parent_trail(result)
    return result


def wire_options(options: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The options ``send_task`` takes, with nested signatures as plain dicts.

    Signatures from Celery may carry options celeriac has no use for (``route_name``,
    ``subtask_type``...): they are dropped, so a Celery-made workflow never stops here.
    """
    from .app import SEND_OPTIONS

    wire: dict[str, Any] = {}
    headers = header_options(options)
    stamp_names = set(headers.get("stamped_headers") or ())
    for key, value in options.items():
        if value is None or key in _IN_HEADERS or (key in stamp_names and key not in SEND_OPTIONS):
            continue
        if key not in SEND_OPTIONS or key == "task":
            logger.debug("task %s: option %r is not used by celeriac; dropped", name, key)
            continue
        if key == "chord":
            value = as_plain(value)
        elif key in ("chain", "link", "link_error"):
            value = [as_plain(item) for item in _as_list(value)]
        wire[key] = value
    if headers:
        wire["headers"] = {**(wire.get("headers") or {}), **headers}
    return wire


def header_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options Celery sends as message headers: ``replaced_task_nesting``, and the
    stamps (``stamped_headers`` and ``stamps``, from the options each stamp names)."""
    headers: dict[str, Any] = {}
    nesting = options.get("replaced_task_nesting")
    if nesting:
        headers["replaced_task_nesting"] = nesting
    stamped = options.get("stamped_headers")
    if stamped:
        names = [stamped] if isinstance(stamped, str) else list(stamped)
        stamps = dict(options.get("stamps") or {})
        stamps.update({name: options[name] for name in names if name in options})
        headers["stamped_headers"] = names
        headers["stamps"] = stamps
    return headers


# chains
def chain_steps(tasks: Iterable[Any], app: Celeriac | None) -> list[Signature]:
    """The steps as they are sent: nested chains spliced, empty groups dropped, one-task
    groups unrolled, ``group, step`` turned into ``chord(group, step)``."""
    flat: list[Signature] = []
    pending: deque[Signature] = deque(_sig(task, app) for task in tasks)
    while pending:
        step = pending.popleft()
        if isinstance(step, chain):
            pending.extendleft(reversed(step.unchain_tasks()))
            continue
        if isinstance(step, group):
            unrolled = step.unrolled()
            if unrolled is None:
                continue
            if unrolled is not step:
                pending.appendleft(unrolled)
                continue
        if isinstance(step, chord) and _led_by_task(step.body):
            assert isinstance(step.body, chain)
            body_steps = step.body.unchain_tasks()
            head = step.clone()
            head.body = body_steps[0]
            pending.extendleft(reversed([head, *body_steps[1:]]))
            continue
        flat.append(step)
    steps: list[Signature] = []
    for step in reversed(flat):
        if isinstance(step, group) and steps:
            step = chord(step, steps.pop(), app=step._app)
        steps.append(step)
    steps.reverse()
    return steps


def _freeze_steps(
    steps: list[Signature],
    last_id: str | None,
    group_id: str | None,
    chord_body: Any,
    group_index: int | None,
    root_id: str | None,
) -> list[AnyResult]:
    results: list[AnyResult] = []
    last = len(steps) - 1
    for position in range(last, -1, -1):
        if position == last:
            result = steps[position].freeze(
                last_id,
                group_id=group_id,
                chord=chord_body,
                root_id=root_id,
                group_index=group_index,
            )
        else:
            result = steps[position].freeze(root_id=root_id)
        results.append(result)
    results.reverse()
    for earlier, later in itertools.pairwise(results):
        top = _top(later)
        if top is not earlier and top.parent is None:
            top.parent = earlier
    return results


def freeze_chain(
    ch: chain,
    last_id: str | None,
    group_id: str | None,
    chord_body: Any,
    root_id: str | None,
    group_index: int | None,
) -> AnyResult:
    steps = chain_steps(ch.tasks, ch._app)
    if not steps:
        raise ValueError("cannot freeze an empty chain: give it at least one signature")
    ch.tasks = steps
    results = _freeze_steps(steps, last_id, group_id, chord_body, group_index, root_id)
    ch.options["task_id"] = results[-1].id
    return results[-1]


def apply_chain(
    ch: chain, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> AnyResult | None:
    opts = {**ch.options, **options}
    last_id = opts.pop("task_id", None)
    group_id = opts.pop("group_id", None)
    group_index = opts.pop("group_index", None)
    chord_body = opts.pop("chord", None)
    root_id = opts.pop("root_id", None)
    parent_id = opts.pop("parent_id", None)
    callbacks = _as_list(opts.pop("link", None))
    errbacks = _as_list(opts.pop("link_error", None))
    outer_chain = list(opts.pop("chain", None) or [])
    if ch.args and not ch.immutable:
        args = args + ch.args
    steps = [step.clone() for step in chain_steps(ch.tasks, ch._app)]
    if not steps:
        return None
    if args or kwargs:
        steps[0] = steps[0].clone(args, kwargs)
    for errback in errbacks:
        for step in steps:
            step.link_error(errback)
    for callback in callbacks:
        steps[-1].link(callback)
    results = _freeze_steps(steps, last_id, group_id, chord_body, group_index, root_id)
    rest = [as_plain(step) for step in reversed(steps[1:])]
    first = steps[0].apply_async(
        chain=outer_chain + rest, root_id=root_id, parent_id=parent_id, **opts
    )
    if len(steps) == 1 and first is not None:
        result: AnyResult = first
        return result
    return results[-1]


def apply_chain_eagerly(ch: chain, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Each step runs here with the previous step's value (``task_always_eager``)."""
    result: Any = None
    for step in chain_steps(ch.tasks, ch._app):
        if result is None:
            current = step.apply(args + ch.args, kwargs)
        else:
            current = step.apply((result.get(),))
        current.parent = result
        result = current
    return result


# groups
def _members(tasks: Iterable[Any], app: Celeriac | None) -> list[Signature]:
    """Group members with nested groups flattened (their indexes continue the count)."""
    members: list[Signature] = []
    for task in tasks:
        sig = _sig(task, app)
        if isinstance(sig, group):
            members.extend(_members(sig.tasks, app))
        elif isinstance(sig, chain) and not sig.tasks:
            continue
        else:
            members.append(sig)
    return members


def freeze_group(
    g: group,
    _id: str | None,
    group_id: str | None,
    chord_body: Any,
    root_id: str | None,
    parent_id: str | None,
    group_index: int | None,
) -> GroupResult:
    opts = g.options
    gid = opts.get("task_id") or _id or protocol.new_id()
    opts["task_id"] = gid
    if group_id:
        opts["group_id"] = group_id
    if chord_body is not None:
        opts["chord"] = chord_body
    if group_index is not None:
        opts["group_index"] = group_index
    root_id = opts.setdefault("root_id", root_id)
    parent_id = opts.setdefault("parent_id", parent_id)
    members = _members(g.tasks, g._app)
    results = [
        member.freeze(
            group_id=group_id,
            chord=chord_body,
            root_id=root_id,
            parent_id=parent_id,
            group_index=index,
        )
        for index, member in enumerate(members)
    ]
    g.tasks = members
    return GroupResult(gid, results, app=g.app)


def apply_group(
    g: group, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
) -> GroupResult:
    opts = dict(g.options)
    for key, value in options.items():
        if key not in IMMUTABLE_OPTIONS or key not in opts:
            opts[key] = value
    gid = opts.pop("task_id", None) or protocol.new_id()
    chord_body = opts.pop("chord", None)
    opts.pop("group_id", None)
    opts.pop("group_index", None)
    add_to_parent = bool(opts.pop("add_to_parent", True))
    plain_body = as_plain(chord_body) if chord_body is not None else None
    results: list[AnyResult] = []
    with g.app.publishing_together():  # one pipelined publish for the members, not one each
        for index, member in enumerate(_members(g.tasks, g._app)):
            result = member.clone().apply_async(
                args,
                kwargs,
                group_id=gid,
                group_index=index,
                chord=plain_body,
                add_to_parent=False,
                **opts,
            )
            if result is not None:
                results.append(result)
    group_result = GroupResult(gid, results, app=g.app)
    if add_to_parent:
        add_to_parent_trail(group_result)
    return group_result


# chords
def chord_size(sig: Signature) -> int:
    """How many parts the chord waits for: each task of the header once; a chain counts as
    its last step, a nested chord as its body (Celery's rule)."""
    if isinstance(sig, group):
        return sum(chord_size(member) for member in _members(sig.tasks, sig._app))
    if isinstance(sig, chain):
        for step in reversed(chain_steps(sig.tasks, sig._app)):
            size = chord_size(step)
            if size:
                return size
        return 0
    if isinstance(sig, chord):
        return chord_size(sig.body) if sig.body is not None else 0
    return 1


def freeze_chord(
    c: chord,
    _id: str | None,
    group_id: str | None,
    chord_body: Any,
    root_id: str | None,
    parent_id: str | None,
    group_index: int | None,
) -> AnyResult:
    header_result = c.header.freeze(parent_id=parent_id, root_id=root_id)
    c.options["task_id"] = header_result.id
    if c.body is None:
        return header_result
    body_result = c.body.freeze(
        _id, group_id=group_id, chord=chord_body, root_id=root_id, group_index=group_index
    )
    top = _top(body_result)
    if top is not header_result:
        top.parent = header_result
    return body_result


def apply_chord(
    c: chord,
    body: Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
) -> AnyResult:
    app = c.app
    opts = {**c.options, **options}
    header_delay: dict[str, Any] = {
        key: opts.pop(key) for key in ("countdown", "eta") if key in opts
    }
    header = c.header.clone()
    gid = header.options.get("task_id") or protocol.new_id()
    header.options["task_id"] = gid
    task_id = opts.pop("task_id", None)
    if task_id == gid:  # a frozen chord carries its header's id; the body has its own
        task_id = None
    if c.args and not c.immutable:
        args = args + c.args
    kwargs = {**(c.kwargs.get("kwargs") or {}), **kwargs}
    body = body.clone()
    if _led_by_task(body):
        assert isinstance(body, chain)
        steps = body.unchain_tasks()
        unrolled = chain(chord(header, steps[0], app=c._app), *steps[1:], app=c._app)
        return _expect(
            apply_chain(unrolled, args, kwargs, {**opts, **header_delay, "task_id": task_id})
        )
    add_to_parent = opts.pop("add_to_parent", True)
    for callback in _as_list(opts.pop("link", None)):
        body.link(callback)
    for errback in _as_list(opts.pop("link_error", None)):
        body.link_error(errback)
    parent_id = opts.pop("parent_id", None)
    body.options.update({key: value for key, value in opts.items() if value is not None})
    body_result = body.freeze(task_id, group_id=gid, root_id=opts.get("root_id"))
    header_options = {key: value for key, value in opts.items() if key not in _BODY_ONLY}
    header_options.update(header_delay, parent_id=parent_id, add_to_parent=add_to_parent)
    if header.tasks:
        _save_structure(header, gid)
        app.backend.set_chord_size(gid, chord_size(header))
        header_result = apply_group(
            header, args, kwargs, {**header_options, "task_id": gid, "chord": body}
        )
    else:  # nothing to wait for: the body runs now, on an empty list
        body.apply_async(([],), parent_id=parent_id)
        header_result = GroupResult(gid, [], app=app)
    top = _top(body_result)
    if top is not header_result:
        top.parent = header_result
    return body_result


def link_chord_error(c: chord, errback: Signature) -> Signature:
    """``chord.link_error``: the body's errback (kept in the chord's options until it has a
    body); with ``task_allow_error_cb_on_chord_header``, each header task's too, as an
    immutable copy; a chord in the header links it the same way (Celery's rules)."""
    on_header = bool(c.app.conf.get("task_allow_error_cb_on_chord_header"))
    for task in c.tasks:
        if isinstance(task, chord):
            task.link_error(errback)
        elif on_header:
            task.link_error(errback.clone().set(immutable=True))
    if c.body is None:
        c._append_option("link_error", errback)
    else:
        c.body.link_error(errback)
    return errback


def _save_structure(header: group, gid: str) -> None:
    """Celery's rule: when a header task's result is a group (a chain or chord ending in
    one), the header's GroupResult is saved before sending, so the worker finishing the
    chord gives the body nested lists, not every value flat."""
    if not any(_ends_in_group(task) for task in header.tasks):
        return
    frozen = header.freeze(gid)
    assert isinstance(frozen, GroupResult)
    frozen.save()


def _ends_in_group(sig: Signature) -> bool:
    if isinstance(sig, chain):
        steps = chain_steps(sig.tasks, sig._app)
        return bool(steps) and _ends_in_group(steps[-1])
    if isinstance(sig, chord):
        return sig.body is not None and _ends_in_group(sig.body)
    return isinstance(sig, group)


def apply_chord_eagerly(
    c: chord, body: Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    values = c.header.apply(args, kwargs).get()
    return body.apply((values,))


# helpers
def _sig(value: Any, app: Celeriac | None) -> Signature:
    if isinstance(value, Signature):
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app=app)
    raise TypeError(f"a canvas step must be a signature or its dict, got {type(value).__name__}")


def _led_by_task(body: Signature | None) -> bool:
    """A chain body whose first step is a task: only that task needs to ride in every
    header message (a group first must stay inside the body, it runs once per member)."""
    return isinstance(body, chain) and bool(body.tasks) and not isinstance(body.tasks[0], group)


def _top(result: AnyResult) -> AnyResult:
    """The earliest result of a frozen step (a chord's header group, a chain's first task)."""
    seen = set()
    node = result
    while node.parent is not None and id(node) not in seen:
        seen.add(id(node))
        node = node.parent
    return node


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _expect(result: AnyResult | None) -> AnyResult:
    if result is None:
        raise ValueError("the chord's body chain has no steps; give the chord a body task")
    return result
