"""A real httpx client for an in-process API server whose task manager lives in the Qt thread.

The test thread is the Qt (main) thread, as in the GUI. A request made from it would block the
thread that must answer the server's marshalled calls, so requests run on a helper thread while
this thread keeps processing Qt events (qtbot.waitUntil), bounded by a timeout.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

FINAL = ("completed", "failed", "cancelled")


class ApiClient:
    def __init__(self, qtbot: Any, base_url: str, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.qtbot = qtbot
        self.client = httpx.Client(base_url=base_url, timeout=30, headers=headers)
        self._pool = ThreadPoolExecutor(8, thread_name_prefix="api-client")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    def submit(self, method: str, path: str, **kw: Any) -> Future[httpx.Response]:
        return self._pool.submit(self.client.request, method, path, **kw)

    def wait(self, future: Future[httpx.Response], timeout_ms: int = 30_000) -> httpx.Response:
        self.qtbot.waitUntil(future.done, timeout=timeout_ms)
        return future.result()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.wait(self.submit(method, path, **kw))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def wait_final(self, task_id: str, timeout_s: float = 90) -> dict[str, Any]:
        """Poll task-status (bounded) until the task is final; returns the record."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self.get(f"/faces/task-status/{task_id}")
            assert response.status_code == 200, response.text
            record: dict[str, Any] = response.json()
            if record["status"] in FINAL:
                return record
            assert time.monotonic() < deadline, f"task {task_id} still {record['status']}"
            self.qtbot.wait(100)
