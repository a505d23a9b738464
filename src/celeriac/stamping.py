"""Stamping (Celery 5.3's canvas stamping): labels put on every task of a canvas before it
is sent, so a worker can read them (``self.request.stamps``) or revoke by them
(``app.control.revoke_by_stamped_headers``).

A stamp lives in a signature's options as Celery keeps it: the stamp's name lists in
``options["stamped_headers"]`` and its value under its own name (``options["mystamp"]``).
Sending turns them into the message headers ``stamped_headers`` and ``stamps``
(canvas_apply.header_options), and the signatures a message carries (chain steps, links,
chord bodies) keep them in their options, so the stamps go along as the canvas runs.

``sig.stamp(visitor, **headers)`` walks the canvas as Celery does: a chain or group stamps
each task, a chord its header tasks and (with a visitor) its body; links are stamped
through ``on_callback`` / ``on_errback``. A visitor's return value adds stamps; what the
caller passed wins over the visitor's value for the same name unless ``append_stamps``,
which keeps both in a list.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .canvas import Signature, chain, chord, group

Headers = dict[str, Any]


class StampingVisitor(ABC):
    """Decides the stamps of each part of a canvas. Subclass it and give ``on_signature``;
    the other hooks default to adding nothing. Each returns a dict of stamps to add."""

    @abstractmethod
    def on_signature(self, sig: Signature, **headers: Any) -> Headers:
        """Stamps for one task signature."""

    def on_group_start(self, group: group, **headers: Any) -> Headers:
        return {}

    def on_group_end(self, group: group, **headers: Any) -> None:
        """Called once the group's tasks are stamped."""
        return None

    def on_chain_start(self, chain: chain, **headers: Any) -> Headers:
        return {}

    def on_chain_end(self, chain: chain, **headers: Any) -> None:
        """Called once the chain's tasks are stamped."""
        return None

    def on_chord_header_start(self, sig: chord, **header: Any) -> Headers:
        return self.on_group_start(sig.header, **header)

    def on_chord_header_end(self, sig: chord, **header: Any) -> None:
        self.on_group_end(sig.header, **header)

    def on_chord_body(self, sig: chord, **header: Any) -> Headers:
        return {}

    def on_callback(self, callback: Signature, **header: Any) -> Headers:
        return {}

    def on_errback(self, errback: Signature, **header: Any) -> Headers:
        return {}


def stamp(
    sig: Signature, visitor: StampingVisitor | None, append_stamps: bool, headers: Headers
) -> None:
    """Stamp *sig* and everything under it (``Signature.stamp``)."""
    from .canvas import chain, chord, group

    if isinstance(sig, chain):
        _stamp_chain(sig, visitor, append_stamps, headers)
    elif isinstance(sig, group):
        _stamp_group(sig, visitor, append_stamps, headers)
    elif isinstance(sig, chord):
        _stamp_chord(sig, visitor, append_stamps, headers)
    else:
        stamp_links(sig, visitor, append_stamps, headers)
        found = visitor.on_signature(sig, **headers) or {} if visitor is not None else None
        sig.set(**collect(sig, found, append_stamps, headers))


def stamp_links(
    sig: Signature, visitor: StampingVisitor | None, append_stamps: bool, headers: Headers
) -> None:
    """Stamp the callbacks and errbacks linked to *sig* (not with *sig*'s own stamps)."""
    from .canvas import maybe_signature

    for option, hook in (("link", "on_callback"), ("link_error", "on_errback")):
        current = copy.deepcopy(headers)
        for value in _as_list(sig.options.get(option)):
            link = maybe_signature(value, app=sig._app)
            found = None
            if visitor is not None:
                found = getattr(visitor, hook)(link, **current) or {}
            current = collect(sig, found, append_stamps, current, own=False)
            stamp(link, visitor, append_stamps, current)


def collect(
    sig: Signature,
    found: Headers | None,
    append_stamps: bool,
    headers: Mapping[str, Any],
    own: bool = True,
) -> Headers:
    """The stamps for *sig*: *headers*, the visitor's *found* ones, and (if *own*) those
    *sig* already has, each name listed once in ``stamped_headers``."""
    merged: Headers = dict(headers)
    merged.setdefault("stamped_headers", list(headers))
    if found is not None:
        found = dict(found)
        found.setdefault("stamped_headers", list(found))
        merge_stamps(merged, found, append_stamps)
        merged["stamped_headers"] = _unique(merged["stamped_headers"])
    if own:
        names = _unique([*merged["stamped_headers"], *_as_list(sig.options.get("stamped_headers"))])
        merged["stamped_headers"] = names
        existing = {key: value for key, value in sig.options.items() if key in names}
        merge_stamps(merged, existing, append_stamps)
        merged["stamped_headers"] = _unique(merged["stamped_headers"])
    return merged


def merge_stamps(into: Headers, other: Mapping[str, Any], append: bool) -> None:
    """Merge *other* into *into* as Celery merges stamps: nested dicts merge, two lists join,
    a name both have keeps *into*'s value unless *append*, which lists both."""
    for key, value in list(into.items()):
        if key not in other:
            continue
        incoming = other[key]
        if isinstance(value, dict) and isinstance(incoming, Mapping):
            merge_stamps(value, incoming, append)
            continue
        if isinstance(value, list) and isinstance(incoming, list):
            value.extend(incoming)
        elif append:
            kept = [] if value is None else _as_list(value)
            into[key] = [*kept, *incoming] if isinstance(incoming, list) else [*kept, incoming]
    for key, value in other.items():
        into.setdefault(key, value)


def _stamp_chain(
    ch: chain, visitor: StampingVisitor | None, append_stamps: bool, headers: Headers
) -> None:
    found = visitor.on_chain_start(ch, **headers) or {} if visitor is not None else None
    headers = collect(ch, found, append_stamps, headers)
    stamp_links(ch, visitor, False, headers)
    for task in ch.tasks:
        stamp(task, visitor, append_stamps, headers)
    if visitor is not None:
        visitor.on_chain_end(ch, **headers)


def _stamp_group(
    g: group, visitor: StampingVisitor | None, append_stamps: bool, headers: Headers
) -> None:
    found = visitor.on_group_start(g, **headers) or {} if visitor is not None else None
    headers = collect(g, found, append_stamps, headers)
    stamp_links(g, visitor, append_stamps, headers)
    for task in g.tasks:
        stamp(task, visitor, append_stamps, headers)
    if visitor is not None:
        visitor.on_group_end(g, **headers)


def _stamp_chord(
    c: chord, visitor: StampingVisitor | None, append_stamps: bool, headers: Headers
) -> None:
    found = visitor.on_chord_header_start(c, **headers) or {} if visitor is not None else None
    headers = collect(c, found, append_stamps, headers)
    stamp_links(c, visitor, append_stamps, headers)
    for task in c.tasks:
        stamp(task, visitor, append_stamps, dict(headers))
    if visitor is None:
        return  # as Celery: without a visitor, the body keeps its own stamps
    visitor.on_chord_header_end(c, **headers)
    if c.body is not None:
        found = visitor.on_chord_body(c, **headers) or {}
        stamp(c.body, visitor, append_stamps, collect(c, found, append_stamps, headers))


def _unique(names: Any) -> list[str]:
    return list(dict.fromkeys(_as_list(names)))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
