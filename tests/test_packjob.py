"""PackJob: pack operations on a worker thread, their signals received on the Qt thread."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from facebatch_gui.core.packs import (
    DownloadProgress,
    PackManager,
    VerifyReport,
    available_model_dir,
)
from facebatch_gui.qt.packjob import PackJob
from tests.support.packserver import PackServer
from tests.test_packs import make_zip


@pytest.fixture
def served(model_dir: Path):
    data = make_zip(model_dir)
    with PackServer({"p.zip": data}) as srv:
        yield srv, data


def test_download_progress_arrives_on_the_gui_thread(qtbot, tmp_path: Path, served) -> None:
    server, data = served
    server.delay_s = 0.002
    job = PackJob(PackManager(tmp_path / "models"))
    events: list[DownloadProgress] = []
    threads: set[int] = set()

    def on_progress(p: DownloadProgress) -> None:
        events.append(p)
        threads.add(threading.get_ident())

    job.progressed.connect(on_progress)
    with qtbot.waitSignal(job.succeeded, timeout=60_000) as result:
        job.download("mine", url=server.url("packs/p.zip"), sha256=hashlib.sha256(data).hexdigest())
    assert result.args[0] == tmp_path / "models" / "mine"
    assert threads == {threading.get_ident()}  # queued onto this (the GUI) thread
    assert any(e.stage == "downloading" and e.total == len(data) for e in events)
    assert events[-1].stage == "done"
    assert job.wait(5)

    with qtbot.waitSignal(job.succeeded, timeout=60_000) as result:
        job.verify("mine")
    assert isinstance(result.args[0], VerifyReport) and result.args[0].ok


def test_cancel_emits_cancelled_and_installs_nothing(qtbot, tmp_path: Path, served) -> None:
    server, _ = served
    server.delay_s = 0.02  # ~2 s in all: time to cancel
    job = PackJob(PackManager(tmp_path / "models"))
    job.progressed.connect(lambda p: job.cancel() if p.bytes_done > 200_000 else None)
    failed: list[str] = []
    job.failed.connect(failed.append)
    with qtbot.waitSignals([job.cancelled, job.finished], timeout=60_000):
        job.download("mine", url=server.url("packs/p.zip"))
    assert failed == []
    assert not (tmp_path / "models" / "mine").exists()
    assert job.manager.partial_bytes("mine") > 200_000  # kept for resume


def test_failure_is_a_message_for_the_operator(qtbot, tmp_path: Path) -> None:
    job = PackJob(PackManager(tmp_path / "models"))
    with qtbot.waitSignal(job.failed, timeout=10_000) as result:
        job.import_pack(tmp_path / "nothing-here.zip")
    assert "does not exist" in result.args[0]


def test_available_model_dir_answers_the_first_run_question(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path))
    monkeypatch.delenv("FACEBATCH_MODEL_DIR", raising=False)
    assert available_model_dir() is None
    PackManager().import_pack(model_dir, name="buffalo_l")
    assert available_model_dir() == tmp_path / "models" / "buffalo_l"
