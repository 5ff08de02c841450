from celery import shared_task

from audit.actors import Actor
from config.errors import DomainError
from privacy import services
from tenants.context import org_context
from tenants.models import Org
from tenants.tasks import for_each_org

RUN_MAX_RETRIES = 5


def _org(org_id: str) -> Org:
    with org_context(org_id):
        return Org.objects.get(id=org_id)


@shared_task(bind=True, acks_late=True, max_retries=RUN_MAX_RETRIES)
def data_subject_request_run_task(self, org_id: str, request_id: str) -> str | None:
    """Runs a request to its end; every step is safe to repeat, so a redelivery after a crash finishes it."""
    actor = Actor.system("privacy.tasks.data_subject_request_run_task")
    org = Org.objects.filter(id=org_id).first()
    if org is None:
        return None
    try:
        request = services.data_subject_request_run(org=org, request_id=request_id, actor=actor)
    except DomainError as exc:
        services.data_subject_request_fail(org=org, request_id=request_id, error=exc.message, actor=actor)
        return "failed"
    except Exception as exc:
        if self.request.retries >= RUN_MAX_RETRIES:
            error = f"gave up after {RUN_MAX_RETRIES} retries: {exc.__class__.__name__}"
            services.data_subject_request_fail(org=org, request_id=request_id, error=error, actor=actor)
            return "failed"
        raise self.retry(exc=exc, countdown=2 ** self.request.retries * 10) from exc
    return request.status if request is not None else None


@shared_task(acks_late=True, max_retries=3)
def data_subject_requests_check_for_org(org_id: str) -> dict[str, int]:
    org = _org(org_id)
    with org_context(org.id):
        return {
            "resumed": services.data_subject_requests_resume_stalled(org=org),
            "flagged_overdue": services.data_subject_requests_flag_overdue(
                org=org, actor=Actor.system("privacy.tasks.data_subject_requests_check_for_org")
            ),
        }


@shared_task
def data_subject_requests_check_all_orgs() -> int:
    """Every few minutes (CELERY_BEAT_SCHEDULE): resumes stalled runs and flags overdue requests."""
    return for_each_org(data_subject_requests_check_for_org)


@shared_task(acks_late=True, max_retries=3)
def data_subject_archives_expire_for_org(org_id: str) -> int:
    org = _org(org_id)
    with org_context(org.id):
        return services.data_subject_archives_expire(
            org=org, actor=Actor.system("privacy.tasks.data_subject_archives_expire_for_org")
        )


@shared_task
def data_subject_archives_expire_all_orgs() -> int:
    return for_each_org(data_subject_archives_expire_for_org)
