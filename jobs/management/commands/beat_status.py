from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from jobs.selectors import beat_staleness_problem, job_runs_by_task


def _schedule_text(schedule) -> str:
    if isinstance(schedule, int | float):
        return f"every {int(schedule)} s"
    return str(schedule)


def _when(moment) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


class Command(BaseCommand):
    help = "Shows the beat schedule and the last run and outcome of each scheduled job."

    def handle(self, *args, **options):
        runs = job_runs_by_task()
        for name, entry in sorted(settings.CELERY_BEAT_SCHEDULE.items()):
            run = runs.get(entry["task"])
            self.stdout.write(f"{name}  ({entry['task']}, {_schedule_text(entry['schedule'])})")
            if run is None:
                self.stdout.write("    last run: never")
                continue
            self.stdout.write(
                f"    last run: {_when(run.last_started_at)}, {run.last_outcome}"
                f" (finished {_when(run.last_finished_at)}, last success {_when(run.last_succeeded_at)}, {run.runs} runs)"
            )
            if run.last_error:
                self.stdout.write(f"    last error: {run.last_error}")
        watched, problem = beat_staleness_problem(now=timezone.now())
        if not watched:
            self.stdout.write("beat: no scheduled job has run yet (not checked by /readyz until one has)")
        else:
            self.stdout.write(f"beat: {problem or 'ok'}")
