import os

from celeriac import Celery

# Set the default Django settings module for the 'celery' program.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")

# Read every setting named CELERY_* from Django's settings: CELERY_BROKER_URL, ...
app.config_from_object("django.conf:settings", namespace="CELERY")

# Find tasks.py in every app of INSTALLED_APPS, once Django is set up.
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")
