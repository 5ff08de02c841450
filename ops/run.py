"""Runs the web server, a Celery worker, Celery beat and the demo's mock provider in the
foreground; Ctrl-C stops them all.

    python -m ops.run

If any of them exits, the others are stopped too, so a broken part is never hidden.
"""
import os
import signal
import subprocess
import sys
import time

PROCESSES = {
    "web": ["make", "--no-print-directory", "web"],
    "worker": ["make", "--no-print-directory", "worker"],
    "beat": ["make", "--no-print-directory", "beat"],
    "mock-provider": ["make", "--no-print-directory", "mock-provider"],
}


def main() -> int:
    children = {name: subprocess.Popen(command, start_new_session=True) for name, command in PROCESSES.items()}
    stopping = False

    def stop(*_args):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"[run] {name} exited with {child.returncode}; stopping the others", file=sys.stderr)
                exit_code = child.returncode or 1
                stopping = True
        time.sleep(0.3)
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
