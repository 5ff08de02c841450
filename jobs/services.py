from django.db.models import F
from django.utils import timezone

from jobs.models import JobOutcome, JobRun


def job_run_start(*, task: str) -> None:
    now = timezone.now()
    updated = JobRun.objects.filter(task=task).update(
        last_started_at=now, last_outcome=JobOutcome.RUNNING, last_error="", runs=F("runs") + 1
    )
    if not updated:
        JobRun.objects.get_or_create(
            task=task, defaults={"last_started_at": now, "last_outcome": JobOutcome.RUNNING, "runs": 1}
        )


def job_run_finish(*, task: str, succeeded: bool, error: str = "") -> None:
    now = timezone.now()
    fields = {"last_finished_at": now, "last_outcome": JobOutcome.SUCCESS if succeeded else JobOutcome.FAILURE,
              "last_error": error[:500]}
    if succeeded:
        fields["last_succeeded_at"] = now
    JobRun.objects.filter(task=task).update(**fields)
