"""Gunicorn hooks (gunicorn reads this file from the working directory)."""


def worker_exit(server, worker):
    # A graceful stop must not lose buffered request-log rows or spend ledger rows.
    from requestlogs.tracing import tracing_flush
    from requestlogs.writer import request_log_buffer
    from spend.ledger import spend_ledger_buffer

    request_log_buffer.flush()
    spend_ledger_buffer.flush()
    tracing_flush()
