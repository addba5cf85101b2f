"""The `facebatch` command, run as a real subprocess against photos on a loopback server."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facebatch_gui.core.records import TaskStatus
from facebatch_gui.core.report import FAILURE_COLUMNS
from facebatch_gui.core.store import SqliteStore
from tests.support.imageserver import ImageServer


def cli(*args: str, timeout: float = 180, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "facebatch_gui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,  # type: ignore[arg-type]
    )


def write_csv(path: Path, rows: list[tuple[str, str]], *, bom: bool = False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "avatar_image_url"])
        writer.writerows(rows)
    return path


def start_cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    """The CLI as a background process, for tests that signal or kill it mid-batch."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen(
        [sys.executable, "-m", "facebatch_gui", *args],
        env=env,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def wait_for_task(db: Path, *, settled_at_least: int = 0, timeout_s: float = 60) -> str | None:
    """Poll the store (bounded) until a task exists with at least that many settled users."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not db.exists():
            continue
        tasks = SqliteStore(db).list_tasks()
        if tasks and settled_at_least <= tasks[0].completed_items < tasks[0].total_items:
            return tasks[0].task_id
    return None


def test_register_json_exit_codes_and_export(
    tmp_path: Path, image_server: ImageServer, model_dir: Path
) -> None:
    db = tmp_path / "f.db"
    good = write_csv(
        tmp_path / "good.csv",
        [("alex", image_server.url("faces/identities/alex_lacamoire/1.jpg"))],
        bom=True,
    )
    out = cli("register", str(good), "--db", str(db), "--model-dir", str(model_dir), "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["status"] == "completed"
    assert (record["total_items"], record["completed_items"], record["failed_items"]) == (1, 1, 0)
    assert record["results"][0]["status"] is True
    assert record["results"][0]["error_code"] is None

    mixed = write_csv(
        tmp_path / "mixed.csv",
        [
            ("kit", image_server.url("faces/identities/kit_harington/1.jpg")),
            ("gone", image_server.url("status/404")),
            ("", "x"),
        ],
    )
    out = cli("register", str(mixed), "--db", str(db), "--model-dir", str(model_dir), "--json")
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout)
    assert record["failed_items"] == 2
    assert "download_failed" in out.stderr
    assert "line 4" in out.stderr  # the empty user_id row, named by its line

    status = cli("status", record["task_id"], "--db", str(db), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["task_id"] == record["task_id"]
    tasks = cli("tasks", "--db", str(db))
    assert record["task_id"] in tasks.stdout

    report = tmp_path / "failures.csv"
    out = cli("export-failures", record["task_id"], str(report), "--db", str(db))
    assert out.returncode == 0, out.stderr
    with report.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == FAILURE_COLUMNS
    assert sorted(r[0] for r in rows[1:]) == ["", "gone"]
    gone = next(r for r in rows[1:] if r[0] == "gone")
    assert gone[1:3] == ["register", "download_failed"]
    assert gone[4].endswith("/status/404")
    assert gone[5]


def test_validate_writes_nothing(
    tmp_path: Path, image_server: ImageServer, model_dir: Path
) -> None:
    db = tmp_path / "v.db"
    listing = write_csv(
        tmp_path / "v.csv",
        [
            ("a", image_server.url("faces/identities/obama/1.jpg")),
            ("b", image_server.url("faces/identities/obama/2.jpg")),
            ("c", image_server.url("faces/multi/two_people.jpg")),
        ],
    )
    out = cli("validate", str(listing), "--db", str(db), "--model-dir", str(model_dir), "--json")
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout)
    codes = sorted(str(r["error_code"]) for r in record["results"])
    assert codes == ["None", "duplicate_face", "multiple_faces"]
    store = SqliteStore(db)
    assert store.list_tasks() == []
    assert store.users_with_faces(["a", "b", "c"]) == set()


def test_delete_by_ids(tmp_path: Path, image_server: ImageServer, model_dir: Path) -> None:
    db = tmp_path / "d.db"
    listing = write_csv(
        tmp_path / "r.csv", [("rose", image_server.url("faces/identities/rose_leslie/1.jpg"))]
    )
    assert (
        cli("register", str(listing), "--db", str(db), "--model-dir", str(model_dir)).returncode
        == 0
    )
    out = cli("delete", "--ids", "rose,nobody", "--db", str(db), "--json")
    assert out.returncode == 1
    results = {r["user_id"]: r for r in json.loads(out.stdout)["results"]}
    assert results["rose"]["status"] is True
    assert results["nobody"]["error_code"] == "user_not_found"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["register", "/no/such/list.csv"], "Cannot read"),
        (["register", "{tmp}/nohdr.csv"], "no user_id column"),
        (["register", "{tmp}/ok.csv", "--model-dir", "{tmp}/no-models"], "does not exist"),
        (["status", "00000000-0000-0000-0000-000000000000"], "No task"),
        (["delete"], "--ids"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "nohdr.csv").write_text("id,url\na,b\n")
    write_csv(tmp_path / "ok.csv", [("a", "http://127.0.0.1:9/a.jpg")])
    out = cli(*[a.format(tmp=tmp_path) for a in args], "--db", str(tmp_path / "x.db"))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr


def test_unknown_option_exits_2() -> None:
    assert cli("register", "--frobnicate").returncode == 2


def test_killed_run_is_interrupted_and_resumes_only_unfinished(
    tmp_path: Path, image_server: ImageServer, model_dir: Path
) -> None:
    """A real crash: the CLI process is SIGKILLed mid-batch; a second run resumes the task."""
    db = tmp_path / "crash.db"
    rows = [("early", image_server.url("faces/identities/obama/1.jpg"))] + [
        (f"late-{i}", image_server.url(f"slow/800/identities/{p}/1.jpg?k={i}"))
        for i, p in enumerate(["biden", "kit_harington", "rose_leslie", "alex_lacamoire"])
    ]
    listing = write_csv(tmp_path / "crash.csv", rows)
    proc = start_cli(
        "register",
        str(listing),
        "--db",
        str(db),
        "--model-dir",
        str(model_dir),
        "--fetch-workers",
        "1",
        "--quiet",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    task_id = wait_for_task(db, settled_at_least=1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert task_id is not None, "the batch never got under way"
    store = SqliteStore(db)
    settled_before = {r.user_id for r in store.get_task(task_id).results}  # type: ignore[union-attr]
    assert "early" in settled_before

    listing_out = cli("tasks", "--db", str(db))
    assert "interrupted" in listing_out.stdout
    assert "were interrupted" in listing_out.stderr
    record = store.get_task(task_id)
    assert record is not None and record.status == TaskStatus.INTERRUPTED

    out = cli("resume", task_id, "--db", str(db), "--model-dir", str(model_dir), "--json")
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "completed"
    assert final["completed_items"] == final["total_items"] == 5
    early = next(r for r in final["results"] if r["user_id"] == "early")
    before = next(r for r in record.results if r.user_id == "early")
    assert early["finished_at"] == before.finished_at  # not run again
    assert sorted(r["user_id"] for r in final["results"]) == sorted(u for u, _ in rows)


def test_ctrl_c_cancels_the_batch(
    tmp_path: Path, image_server: ImageServer, model_dir: Path
) -> None:
    """SIGINT, as a terminal's Ctrl-C sends it: unfinished users end `cancelled`, exit 1."""
    db = tmp_path / "int.db"
    rows = [
        (f"slow-{i}", image_server.url(f"slow/1500/identities/obama/1.jpg?i={i}")) for i in range(6)
    ]
    listing = write_csv(tmp_path / "int.csv", rows)
    proc = start_cli(
        "register",
        str(listing),
        "--db",
        str(db),
        "--model-dir",
        str(model_dir),
        "--fetch-workers",
        "1",
        "--json",
        "--quiet",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert wait_for_task(db) is not None
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    record = json.loads(out)
    assert record["status"] == "cancelled"
    assert record["completed_items"] == record["total_items"] == 6
    assert any(r["error_code"] == "cancelled" for r in record["results"])
