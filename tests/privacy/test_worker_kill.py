"""A worker killed (SIGKILL) in the middle of an erasure: another worker finishes it, nothing of the
subject survives, and the proof of erasure is written exactly once."""
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from audit.models import AuditEvent
from config.celery import app
from privacy import services
from privacy.models import DataSubjectRequest, RequestStatus
from privacy.tasks import data_subject_requests_check_for_org
from requestlogs.models import RequestLog
from tenants.context import org_context
from tests.conftest import SYSTEM, unique_slug
from tests.privacy.conftest import logs_write

SUBJECT_ROWS = 1000
BATCH_ROWS = 100


def worker_start(*, test_database_url: str, queue: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": test_database_url, "GATEHOUSE_DSR_BATCH_ROWS": str(BATCH_ROWS),
           "GATEHOUSE_DSR_BATCH_PAUSE_SECONDS": "0.3"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues", queue,
         "--hostname", f"{queue}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
         "--loglevel", "WARNING"],
        env=env,
    )


def request_state(org, request_id) -> DataSubjectRequest:
    with org_context(org.id):
        return DataSubjectRequest.objects.get(id=request_id)


def wait_for(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.worker
def test_an_erasure_killed_mid_way_is_finished_by_the_next_worker(committed, test_database_url, settings):
    queue = f"test-dsr-{uuid.uuid4().hex[:8]}"
    default_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue  # this test's workers consume only this queue
    try:
        erasure_killed_and_finished(queue=queue, test_database_url=test_database_url, settings=settings)
    finally:
        app.conf.task_default_queue = default_queue


def erasure_killed_and_finished(*, queue: str, test_database_url: str, settings) -> None:
    from tenants.services import org_create

    org, _ = org_create(slug=unique_slug("kill"), name="Kill", data_region="us",
                        owner_email=f"{unique_slug('o')}@kill.example", actor=SYSTEM)
    other, _ = org_create(slug=unique_slug("other"), name="Other", data_region="us",
                          owner_email=f"{unique_slug('o')}@other.example", actor=SYSTEM)
    logs_write(org, "victim@example.com", SUBJECT_ROWS)
    logs_write(org, "bystander", 5)
    logs_write(other, "victim@example.com", 3)

    first = worker_start(test_database_url=test_database_url, queue=queue)
    second = None
    try:
        with org_context(org.id):
            request = services.data_subject_request_file(
                org=org, kind="erasure", subject_kind="email", subject_value="victim@example.com", actor=SYSTEM
            )  # queued to the worker when this commits
        wait_for(lambda: request_state(org, request.id).counts.get("requestlogs_requestlog", 0) >= 3 * BATCH_ROWS,
                 timeout=60, what="the first batches")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed = request_state(org, request.id)
        assert killed.status == RequestStatus.RUNNING
        assert killed.counts["requestlogs_requestlog"] < SUBJECT_ROWS, "killed too late: raise SUBJECT_ROWS"

        # The sweep (beat, every few minutes) finds the silent run and queues it for the next worker.
        second = worker_start(test_database_url=test_database_url, queue=queue)
        settings.GATEHOUSE_DSR_STALL_SECONDS = 0
        assert data_subject_requests_check_for_org.apply(args=[str(org.id)]).get()["resumed"] == 1
        done = wait_for(lambda: (state := request_state(org, request.id)).status == RequestStatus.DONE and state,
                        timeout=90, what="the erasure to finish")
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)

    assert done.attempts == 2 and done.subject_value == ""
    assert done.counts["requestlogs_requestlog"] == SUBJECT_ROWS
    with org_context(org.id):
        assert not RequestLog.objects.filter(end_user__iexact="victim@example.com").exists()
        assert RequestLog.objects.filter(end_user=f"erased:{done.subject_hash[:32]}", request_text=None).count() == SUBJECT_ROWS
        assert RequestLog.objects.filter(end_user="bystander").count() == 5
        proofs = list(AuditEvent.objects.filter(action="privacy.erasure.completed", target_id=str(request.id)))
    with org_context(other.id):
        assert RequestLog.objects.filter(end_user="victim@example.com").count() == 3
    assert len(proofs) == 1
    assert proofs[0].changes["counts"][1]["requestlogs_requestlog"] == SUBJECT_ROWS
    assert "victim" not in str(proofs[0].changes)
