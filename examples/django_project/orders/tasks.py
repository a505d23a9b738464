import os

from django.db import connection

from celeriac import shared_task

from .models import Order


@shared_task
def place_order(item, quantity=1):
    """Write one row and say which process and database session wrote it."""
    order = Order.objects.create(item=item, quantity=quantity, worker_pid=os.getpid())
    return {"order": order.pk, "pid": os.getpid(), "session": database_session()}


@shared_task
def count_orders():
    return Order.objects.count()


def database_session():
    """The server's id for this connection: PostgreSQL's backend pid; for SQLite, which
    has no server, the id of the open handle in this process."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return {"vendor": "postgresql", "backend_pid": cursor.fetchone()[0]}
    connection.ensure_connection()
    return {"vendor": connection.vendor, "handle": id(connection.connection)}
