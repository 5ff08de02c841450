from django.db import models


class JobOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Succeeded"
    FAILURE = "failure", "Failed"


class JobRun(models.Model):
    """The latest run of one scheduled job (the task of a CELERY_BEAT_SCHEDULE entry), written by the worker
    that ran it (jobs.receivers). Not tenant data: one row per task for the whole installation."""

    task = models.CharField(max_length=200, primary_key=True)
    last_started_at = models.DateTimeField()
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=10, choices=JobOutcome.choices)
    last_error = models.CharField(max_length=500, blank=True)
    runs = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return self.task
