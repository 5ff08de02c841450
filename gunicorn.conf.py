"""Gunicorn hooks (gunicorn reads this file from the working directory)."""


def worker_exit(server, worker):
    # A graceful stop must not lose buffered request-log rows.
    from requestlogs.tracing import tracing_flush
    from requestlogs.writer import request_log_buffer

    request_log_buffer.flush()
    tracing_flush()
