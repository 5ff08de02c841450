"""Run the mock provider (tests/mock_provider/server.py) as a subprocess, for tests and benchmarks."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.mock_provider.server import READY_MARKER, REQUIRED_KEY_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 5
CONTROL_TIMEOUT_SECONDS = 5


class MockProvider:
    """A mock provider server process.

    required_key: if given, the server answers 401 to requests that do not present this key.
    """

    def __init__(self, host: str = "127.0.0.1", required_key: str | None = None):
        self.host = host
        self.required_key = required_key
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> MockProvider:
        if self._process is not None:
            raise RuntimeError("mock provider already started")
        env = os.environ.copy()
        env.pop(REQUIRED_KEY_ENV, None)
        if self.required_key is not None:
            env[REQUIRED_KEY_ENV] = self.required_key
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.mock_provider.server", "--host", self.host, "--port", "0"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready_line = self._read_first_line(READY_TIMEOUT_SECONDS)
        if ready_line is None or not ready_line.startswith(f"{READY_MARKER} port="):
            exit_code = self._process.poll()
            self.stop()
            if ready_line is None:
                state = "printed nothing"
            elif not ready_line:
                state = "closed its stdout"
            else:
                state = f"printed {ready_line.strip()!r}"
            raise RuntimeError(
                f"mock provider did not become ready within {READY_TIMEOUT_SECONDS}s: it {state}"
                f" (exit code {exit_code}); see its stderr above"
            )
        self.port = int(ready_line.strip().split("port=", 1)[1])
        return self

    def _read_first_line(self, timeout: float) -> str | None:
        """The first stdout line of the server, or None if none arrives in time."""
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self._process.stdout.readline()), daemon=True).start()
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")

    def reset(self) -> None:
        self._control("POST", "reset")

    def _control(self, method: str, action: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.base_url}/__mock__/{action}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT_SECONDS) as response:
            return json.load(response)

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def mock_provider():
    """A started mock provider shared by the session, with fresh statistics."""
    with MockProvider() as provider:
        provider.reset()
        yield provider
