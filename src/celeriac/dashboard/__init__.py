"""``celeriac dashboard``: a live web view of a cluster, served by Starlette on uvicorn.

``state`` follows the cluster (events, ``inspect tree``/``stats``, queue lengths) on two
background threads; ``history`` keeps the tasks seen in the result backend, bounded by
``dashboard_max_tasks``; ``security`` guards every request (auth, CSRF); ``app`` mounts the
pages (``page_*``, one module per page), the actions, the live stream and ``/metrics``.
"""
