"""Records each run of a scheduled job (`manage.py beat_status`, the beat check of /readyz). Only the tasks
named in CELERY_BEAT_SCHEDULE are recorded; a failure to record never fails the task itself."""
import logging

from celery import states
from celery.signals import task_postrun, task_prerun
from django.db import DatabaseError

from jobs.selectors import scheduled_task_names
from jobs.services import job_run_finish, job_run_start

logger = logging.getLogger(__name__)


@task_prerun.connect
def job_run_started(sender=None, **_kwargs):
    if sender is None or sender.name not in scheduled_task_names():
        return
    try:
        job_run_start(task=sender.name)
    except DatabaseError:
        logger.exception("could not record the start of %s", sender.name)


@task_postrun.connect
def job_run_finished(sender=None, retval=None, state=None, **_kwargs):
    if sender is None or sender.name not in scheduled_task_names():
        return
    succeeded = state == states.SUCCESS
    try:
        job_run_finish(task=sender.name, succeeded=succeeded, error="" if succeeded else f"{state}: {retval}")
    except DatabaseError:
        logger.exception("could not record the end of %s", sender.name)
