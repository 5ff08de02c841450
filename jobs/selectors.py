import datetime

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from jobs.models import JobRun


def scheduled_task_names() -> set[str]:
    return {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def job_runs_by_task() -> dict[str, JobRun]:
    return {run.task: run for run in JobRun.objects.filter(task__in=scheduled_task_names())}


def beat_staleness_problem(*, now: datetime.datetime | None = None) -> tuple[bool, str | None]:
    """(whether beat is watched, what is wrong). Watched once any scheduled job has ever started, so that a
    fresh installation, or one that runs no beat at all, is not reported as broken."""
    threshold = settings.GATEHOUSE_BEAT_STALE_SECONDS
    last_started = JobRun.objects.filter(task__in=scheduled_task_names()).aggregate(last=Max("last_started_at"))["last"]
    if not threshold or last_started is None:
        return False, None
    silent_seconds = int(((now or timezone.now()) - last_started).total_seconds())
    if silent_seconds > threshold:
        return True, f"no scheduled job has started for {silent_seconds} s (more than {threshold} s): is celery beat running?"
    return True, None
