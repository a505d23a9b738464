"""Celery's ``celery.utils`` import paths that task modules use (``celeriac.utils.log``)."""
