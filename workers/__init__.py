"""Celery workers: the engine's services run as tasks, across processes and machines.

``celery -A workers worker`` (or ``journey worker``) finds the app here. See
``workers.app`` for the queues and task settings, ``workers.tasks`` for the tasks,
``workers.scheduler`` for the periodic jobs, ``workers.doorbell`` for how work is rung.
"""

from workers.app import make_app

app = make_app()

__all__ = ["app"]
