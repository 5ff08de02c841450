import datetime

from celery import shared_task

from spend.services import budget_soft_limit_alert


@shared_task(acks_late=True, max_retries=3, autoretry_for=(Exception,), retry_backoff=True)
def budget_soft_limit_alert_record(org_id: str, budget_id: str, end_user: str, period_start: str, spent_microusd: int) -> None:
    """Queued by the gate when a settle first crosses a soft limit in a period: off the request path."""
    budget_soft_limit_alert(org_id=org_id, budget_id=budget_id, end_user=end_user,
                            period_start=datetime.datetime.fromisoformat(period_start), spent_microusd=spent_microusd)


@shared_task
def spend_reservations_expire() -> int:
    """Beat: gives back the reservations of requests whose process died before settling them."""
    from spend.gate import reservations_expire

    return reservations_expire()
