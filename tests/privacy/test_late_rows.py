"""An erasure also catches the rows that web processes still held in their write buffers when it began."""
import threading
import time

from django.db import connection

from privacy import services
from privacy.models import DataSubjectRequest, RequestStatus
from requestlogs.models import RequestLog
from tenants.context import org_context
from tests.conftest import SYSTEM, unique_slug
from tests.privacy.conftest import logs_write


def test_rows_written_after_the_first_pass_are_erased_by_the_second(committed, settings):
    from tenants.services import org_create

    settings.GATEHOUSE_DSR_LATE_ROWS_SECONDS = 1.0
    org, _ = org_create(slug=unique_slug("late"), name="Late", data_region="us",
                        owner_email=f"{unique_slug('o')}@late.example", actor=SYSTEM)
    logs_write(org, "late-user", 3)
    with org_context(org.id):
        request = services.data_subject_request_file(org=org, kind="erasure", subject_kind="end_user",
                                                     subject_value="late-user", actor=SYSTEM)

    def a_web_process_flushes_its_buffer_late():
        time.sleep(0.4)  # during the wait between the two passes
        try:
            logs_write(org, "late-user", 2)
        finally:
            connection.close()

    writer = threading.Thread(target=a_web_process_flushes_its_buffer_late)
    writer.start()
    services.data_subject_request_run(org=org, request_id=request.id, actor=SYSTEM)
    writer.join()

    with org_context(org.id):
        done = DataSubjectRequest.objects.get(id=request.id)
        assert done.status == RequestStatus.DONE
        assert not RequestLog.objects.filter(end_user="late-user").exists()
        assert RequestLog.objects.filter(end_user__startswith="erased:").count() == 5
        assert sum(count for table, count in done.counts.items() if "requestlog" in table) == 5
