"""`facebatch serve` as a real subprocess: the README's Python and cURL examples verbatim (only the
API address and the photo host substituted), token from the environment, refusal to listen beyond
loopback without a token, and SIGTERM cancelling running tasks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from facebatch_gui.core.store import SqliteStore
from tests.support.imageserver import ImageServer

REPO = Path(__file__).resolve().parents[1]
FINAL = ("completed", "failed", "cancelled")


def readme_examples() -> tuple[str, list[str]]:
    """The Python block and the cURL commands of the README's HTTP API section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    python = [body for lang, body in blocks if lang == "python"]
    curl = [body for lang, body in blocks if lang == "bash" and body.startswith("curl")]
    assert len(python) == 1 and len(curl) == 1, "README's HTTP API examples moved"
    commands = re.split(r"\n(?=curl )", curl[0].replace("\\\n", " ").strip())
    return python[0], commands


class Serve:
    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out = tmp / "serve.out"
        self.err = tmp / "serve.err"
        self.db = tmp / "serve.db"
        command = [sys.executable, "-m", "facebatch_gui", "serve", "--port", "0", "--json"]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [*command, "--db", str(self.db), *args],
                stdout=out,
                stderr=err,
                env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})},
                cwd=REPO,  # this checkout, not another editable install
            )
        self.url = self._wait_url()

    def _wait_url(self, timeout_s: float = 90) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.out.exists() and self.out.read_text().strip():
                return str(json.loads(self.out.read_text().splitlines()[0])["url"])
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"serve did not start: {self.err.read_text()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def wait_final(self, task_id: str, timeout_s: float = 90, **kw: object) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            record = httpx.get(f"{self.url}/faces/task-status/{task_id}", timeout=10, **kw).json()  # type: ignore[arg-type]
            if record["status"] in FINAL:
                return record
            time.sleep(0.2)
        raise AssertionError(f"task {task_id} did not finish")


@pytest.fixture
def photos(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[ImageServer]:
    """alice.jpg and bob.jpg, as the README names them, are real photos on a loopback server."""
    root = tmp_path_factory.mktemp("photos")
    shutil.copy(faces_dir / "identities/obama/1.jpg", root / "alice.jpg")
    shutil.copy(faces_dir / "identities/kit_harington/1.jpg", root / "bob.jpg")
    with ImageServer(root) as server:
        yield server


def test_readme_examples_work_verbatim(
    tmp_path: Path, photos: ImageServer, model_dir: Path
) -> None:
    python, commands = readme_examples()
    server = Serve(tmp_path, "--model-dir", str(model_dir), "--allow-private-urls")
    try:

        def local(text: str) -> str:
            return text.replace("http://localhost:8000", server.url).replace(
                "https://example.com/photos/", f"{photos.base_url}/faces/"
            )

        def run(command: str) -> str:
            out = subprocess.run(
                ["bash", "-c", local(command) + " --silent --show-error --fail-with-body"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 0, (command, out.stdout, out.stderr)
            return out.stdout

        register, status, delete = commands
        started = json.loads(run(register))
        assert started["message"] == "Batch face registration started in background"
        assert started["total_users"] == 1
        deadline = time.monotonic() + 90
        while True:
            record = json.loads(run(status.replace("TASK_ID", started["task_id"])))
            if record["status"] in FINAL or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert record["status"] == "completed", record
        assert record["results"][0]["user_id"] == "alice" and record["results"][0]["status"]

        deleted = json.loads(run(delete))
        assert deleted["message"] == "Batch face deletion started in background"
        assert deleted["total_users"] == 2
        record = server.wait_final(deleted["task_id"])
        assert {r["user_id"]: r["status"] for r in record["results"]} == {
            "alice": True,
            "bob": False,
        }

        out = subprocess.run(
            [sys.executable, "-c", local(python)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("Batch face registration started in background")
        assert lines[0].endswith(" 2")
        assert "completed 100% (0 failed)" in lines
        assert sorted(lines[-2:]) == ["alice ok", "bob ok"]
    finally:
        assert server.stop() == 0
    assert "HTTP API stopped" in server.err.read_text()


def test_non_loopback_without_token_exits_2(tmp_path: Path) -> None:
    """Refused before anything is loaded or bound."""
    db = str(tmp_path / "x.db")
    out = subprocess.run(
        [sys.executable, "-m", "facebatch_gui", "serve", "--host", "0.0.0.0", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "FACEBATCH_API_TOKEN": ""},
        cwd=REPO,
    )
    assert out.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without a token" in out.stderr
    assert not (tmp_path / "x.db").exists()


def test_env_token_guards_routes(tmp_path: Path, model_dir: Path) -> None:
    server = Serve(tmp_path, "--model-dir", str(model_dir), env={"FACEBATCH_API_TOKEN": "from-env"})
    try:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/faces/tasks", timeout=10).status_code == 401
        ok = httpx.get(
            f"{server.url}/faces/tasks", headers={"Authorization": "Bearer from-env"}, timeout=10
        )
        assert ok.status_code == 200 and ok.json() == []
    finally:
        assert server.stop(signal.SIGTERM) == 0


def test_sigterm_cancels_running_tasks(
    tmp_path: Path, image_server: ImageServer, model_dir: Path
) -> None:
    server = Serve(
        tmp_path, "--model-dir", str(model_dir), "--allow-private-urls", "--fetch-workers", "1"
    )
    try:
        users = [
            {
                "user_id": f"u{i}",
                "avatar_image_url": image_server.url(f"slow/2000/identities/biden/1.jpg?s={i}"),
            }
            for i in range(5)
        ]
        response = httpx.post(
            f"{server.url}/faces/batch-register", json={"users": users}, timeout=30
        )
        task_id = response.json()["task_id"]
        status = httpx.get(f"{server.url}/faces/task-status/{task_id}", timeout=10).json()
        assert status["status"] == "processing"
    finally:
        rc = server.stop(signal.SIGTERM)
    assert rc == 0
    assert f"cancelled 1 running task(s): {task_id}" in server.err.read_text()
    record = SqliteStore(server.db).get_task(task_id)
    assert record is not None and record.status.value == "cancelled"
    assert record.completed_items == record.total_items == 5
    assert any(r.error_code == "cancelled" for r in record.results)
