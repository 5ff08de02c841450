"""The record of scheduled job runs, `manage.py beat_status`, and the beat check of /readyz."""
import datetime
import io

import pytest
from celery import shared_task
from django.core.management import call_command
from django.utils import timezone

from accounts.tasks import admin_tokens_expire_all_orgs
from jobs.models import JobOutcome, JobRun

pytestmark = pytest.mark.django_db


@shared_task(name="tests.beat.always_fails")
def always_fails():
    raise RuntimeError("the job broke")


def beat_status() -> str:
    output = io.StringIO()
    call_command("beat_status", stdout=output)
    return output.getvalue()


def test_a_scheduled_jobs_runs_are_recorded_and_shown(org_a):
    admin_tokens_expire_all_orgs.apply()
    admin_tokens_expire_all_orgs.apply()
    run = JobRun.objects.get(task="accounts.tasks.admin_tokens_expire_all_orgs")
    assert run.last_outcome == JobOutcome.SUCCESS and run.runs == 2
    assert run.last_finished_at >= run.last_started_at and run.last_succeeded_at == run.last_finished_at
    text = beat_status()
    assert "admin-tokens-expire  (accounts.tasks.admin_tokens_expire_all_orgs, every 600 s)" in text
    assert "success" in text and "2 runs" in text
    assert "audit-verify  (audit.tasks.audit_verify_all_orgs, <crontab: 15 3 * * * (m/h/dM/MY/d)>)\n    last run: never" in text
    for entry in ("virtual-keys-rotate", "secrets-reencrypt", "privacy-requests-check", "privacy-archives-expire"):
        assert entry in text
    assert "beat: ok" in text


def test_a_failing_job_is_recorded_with_its_error(settings):
    settings.CELERY_BEAT_SCHEDULE = {**settings.CELERY_BEAT_SCHEDULE,
                                     "broken": {"task": "tests.beat.always_fails", "schedule": 60.0}}
    always_fails.apply()
    run = JobRun.objects.get(task="tests.beat.always_fails")
    assert run.last_outcome == JobOutcome.FAILURE and run.last_succeeded_at is None
    assert "the job broke" in run.last_error
    assert "last error: FAILURE: the job broke" in beat_status()


def test_tasks_outside_the_schedule_are_not_recorded(org_a):
    from accounts.tasks import admin_tokens_expire_for_org

    admin_tokens_expire_for_org.apply(args=[str(org_a[0].id)])
    assert not JobRun.objects.exists()


def test_readyz_does_not_watch_beat_before_any_job_ran(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and "beat" not in response.json()["checks"]
    assert "not checked by /readyz until one has" in beat_status()


def test_readyz_reports_a_beat_that_went_silent(client, settings):
    settings.GATEHOUSE_BEAT_STALE_SECONDS = 600
    admin_tokens_expire_all_orgs.apply()
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["checks"]["beat"] == "ok"

    JobRun.objects.update(last_started_at=timezone.now() - datetime.timedelta(seconds=900))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "is celery beat running?" in response.json()["failing"]["beat"]
    assert "beat: no scheduled job has started for" in beat_status()

    settings.GATEHOUSE_BEAT_STALE_SECONDS = 0  # not watched at all
    assert client.get("/readyz").status_code == 200
