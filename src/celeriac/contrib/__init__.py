"""Optional extras that Celery keeps under ``celery.contrib``."""
