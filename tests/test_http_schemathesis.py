"""Schemathesis against the live API's OpenAPI document: a real server on 127.0.0.1:0 with a
token, the real TaskManager in the Qt thread, real models and SQLite; a bounded number of
examples per operation; checks: no 5xx, response schemas and status codes as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facebatch_gui.api import ApiConfig, ApiServer
from facebatch_gui.core.store import SqliteStore
from facebatch_gui.qt.runner import TaskManager
from facebatch_gui.qt.service import QtTaskService

REPO = Path(__file__).resolve().parents[1]
MAX_EXAMPLES = int(os.environ.get("FACEBATCH_ST_EXAMPLES", "50"))
TOKEN = "fuzz-token"


@pytest.fixture
def manager(store: SqliteStore, engine) -> Iterator[TaskManager]:
    m = TaskManager(store, engine)
    yield m
    for runner in m.runners.values():
        runner.cancel()
    m.wait_all(30_000)


def test_schemathesis_finds_no_server_errors_or_schema_violations(
    qtbot, manager: TaskManager, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = QtTaskService(manager, timeout_s=20)
    server = ApiServer(service, ApiConfig(port=0, token=TOKEN, max_concurrent_tasks=4))
    url = server.start()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--seed",
        "20261204",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.support.st_hooks",
        "PYTHONPATH": str(REPO),
    }
    started = time.monotonic()
    log = tmp_path / "schemathesis.log"
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
            )
            try:
                # Keep the Qt thread serving the API's marshalled calls while schemathesis runs.
                qtbot.waitUntil(lambda: proc.poll() is not None, timeout=240_000)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
    finally:
        service.close()
        server.stop()
    text = log.read_text()
    elapsed = time.monotonic() - started
    with capsys.disabled():  # the figures for the record: operations, test cases, failures
        print(f"\nschemathesis ({elapsed:.0f} s, max {MAX_EXAMPLES} examples per operation):")
        print(text)
    assert proc.returncode == 0, text[-6000:]
    assert re.search(r"Operations:\s+6 selected / 6 total", text), text[-3000:]
    assert re.search(r"\d+ generated, \d+ passed\s*$", text, re.M), text[-3000:]
    assert len(manager.runners) > 0  # generated bodies did start real tasks
