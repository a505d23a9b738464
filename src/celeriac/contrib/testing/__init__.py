"""Helpers for testing a celeriac project, under Celery's ``celery.contrib.testing`` names:
``worker.start_worker`` and ``app.TestApp``."""
