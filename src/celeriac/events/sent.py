"""``task-sent``: the client's event, with ``task_send_sent_event = True`` (Celery's setting).

A view of the ``task_published`` lifecycle point, subscribed once an app with the setting
on works out its routes (before its first send), so clients without it pay nothing. Each
message sent gives one ``task-sent`` event, published alone with the routing key
``task.sent``, from ``gen<pid>@<host>`` as Celery's clients name themselves.
"""

from __future__ import annotations

import os
import socket
import weakref
from typing import TYPE_CHECKING

from .. import lifecycle
from .dispatcher import EventDispatcher

if TYPE_CHECKING:
    from ..app import Celeriac
    from ..lifecycle import OutgoingMessage

_dispatchers: weakref.WeakKeyDictionary[Celeriac, EventDispatcher] = weakref.WeakKeyDictionary()


def _dispatcher(app: Celeriac) -> EventDispatcher:
    dispatcher = _dispatchers.get(app)
    if dispatcher is None or dispatcher.pid != os.getpid():
        hostname = f"gen{os.getpid()}@{socket.gethostname()}"
        dispatcher = _dispatchers[app] = EventDispatcher(app, hostname)
    return dispatcher


def on_published(message: OutgoingMessage) -> None:
    app = message.app
    if not app.conf.task_send_sent_event:
        return
    headers = message.headers
    _dispatcher(app).send(
        "task-sent",
        uuid=message.task_id,
        root_id=headers.get("root_id"),
        parent_id=headers.get("parent_id"),
        name=message.name,
        args=headers.get("argsrepr"),
        kwargs=headers.get("kwargsrepr"),
        retries=headers.get("retries") or 0,
        eta=headers.get("eta"),
        expires=headers.get("expires"),
        queue=message.queue,
        exchange=message.exchange,
        routing_key=message.routing_key,
    )


def watch(app: Celeriac) -> None:
    """Send task-sent events for *app*'s messages (called when its routes are worked out)."""
    if app.conf.task_send_sent_event:
        lifecycle.task_published.subscribe(on_published)
