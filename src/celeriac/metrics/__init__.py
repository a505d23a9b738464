"""Prometheus metrics and health checks for a worker (``celeriac worker --metrics-port``).

``families`` names the metrics (celery-exporter's names and labels, then celeriac's own);
``view`` feeds them from the task lifecycle; ``progress`` is the consume loop's pulse that
``/readyz`` reads; ``server`` serves ``/metrics``, ``/healthz`` and ``/readyz``. Only
``progress`` is imported by the worker's hot path, and it does not import prometheus_client.
"""
