"""The seed's task modules: basic, advanced and real-world work (``celery_app.include``)."""
