"""Whole batches through the real TaskManager (QThreadPool, Qt event loop via pytest-qt), real
models, real photos from a loopback HTTP server and local files, and a real SQLite store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import ItemResult, TaskRecord, TaskStatus, UserEntry
from facebatch_gui.core.settings import BatchSettings, FetchSettings
from facebatch_gui.core.store import SqliteStore
from facebatch_gui.qt.runner import TaskManager
from tests.support.imageserver import ImageServer

FAST_FETCH = FetchSettings(backoff_s=0.01, retries=1, read_timeout_s=5, max_bytes=3_000_000)


def _settings(**kw: object) -> BatchSettings:
    return BatchSettings(fetch=FAST_FETCH, **kw)  # type: ignore[arg-type]


@pytest.fixture
def manager(store: SqliteStore, engine) -> Iterator[TaskManager]:
    m = TaskManager(store, engine)
    yield m
    for runner in m.runners.values():
        runner.cancel()
    m.wait_all(30_000)


def run_task(qtbot, manager: TaskManager, start, timeout_ms: int = 60_000) -> TaskRecord:
    with qtbot.waitSignal(manager.taskFinished, timeout=timeout_ms) as blocker:
        task_id = start()
    assert blocker.args == [task_id]
    manager.runners[task_id].wait(10_000)
    record = manager.get(task_id)
    assert record is not None
    return record


def by_user(record: TaskRecord) -> dict[str, ItemResult]:
    return {r.user_id: r for r in record.results}


@pytest.fixture(scope="module")
def made_images(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> dict[str, str]:
    """Real photos altered into edge cases, saved as local files."""
    out = tmp_path_factory.mktemp("made")
    obama = cv2.imread(str(faces_dir / "identities/obama/1.jpg"))
    kit = cv2.imread(str(faces_dir / "identities/kit_harington/1.jpg"))
    small = cv2.imread(str(faces_dir / "probes/obama_small.jpg"))
    files = {
        "no_face.png": obama[int(obama.shape[0] * 0.75) :, :],
        "blurred.png": cv2.GaussianBlur(kit, (25, 25), 0),
        "tiny.png": cv2.resize(small, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA),
    }
    paths = {}
    for name, img in files.items():
        cv2.imwrite(str(out / name), img)
        paths[name] = str(out / name)
    return paths


def test_every_outcome_of_a_register_batch(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer, made_images
) -> None:
    url = image_server.url
    entries = [
        UserEntry("ok-obama", url("faces/identities/obama/1.jpg"), 2),
        UserEntry("ok-rgba", url("faces/identities/rose_leslie/1.jpg"), 3),
        UserEntry("missing", url("status/404"), 4),
        UserEntry("html", url("page.html"), 5),
        UserEntry("huge", url("big/5000000"), 6),
        UserEntry("truncated-body", url("truncated/identities/biden/1.jpg"), 7),
        UserEntry("truncated-file", url("truncated-file/identities/biden/2.jpg"), 8),
        UserEntry("group", url("faces/multi/kit_with_rose.jpg"), 9),
        UserEntry("no-face", made_images["no_face.png"], 10),
        UserEntry("tiny", made_images["tiny.png"], 11),
        UserEntry("blurred", "file://" + made_images["blurred.png"], 12),
        UserEntry("", url("faces/identities/biden/1.jpg"), 13),
        UserEntry("bad-url", "http://", 14),
        UserEntry("ok-obama", url("faces/identities/biden/1.jpg"), 15),
        UserEntry("server-error", url("status/500"), 16),
    ]
    record = run_task(qtbot, manager, lambda: manager.start_register(entries, _settings()))
    assert record.status == TaskStatus.COMPLETED
    assert record.total_items == record.completed_items == len(entries) == len(record.results)
    assert record.progress == 100
    got = {(r.user_id, r.error_code) for r in record.results}
    expected = {
        ("ok-obama", None),
        ("ok-rgba", None),
        ("missing", ErrorCode.DOWNLOAD_FAILED),
        ("html", ErrorCode.NOT_AN_IMAGE),
        ("huge", ErrorCode.IMAGE_TOO_LARGE),
        ("truncated-body", ErrorCode.DOWNLOAD_FAILED),
        ("truncated-file", ErrorCode.NOT_AN_IMAGE),
        ("group", ErrorCode.MULTIPLE_FACES),
        ("no-face", ErrorCode.NO_FACE_DETECTED),
        ("tiny", ErrorCode.FACE_TOO_SMALL),
        ("blurred", ErrorCode.LOW_QUALITY),
        ("", ErrorCode.INVALID_INPUT),
        ("bad-url", ErrorCode.INVALID_INPUT),
        ("ok-obama", ErrorCode.INVALID_INPUT),
        ("server-error", ErrorCode.DOWNLOAD_FAILED),
    }
    assert got == expected
    assert record.failed_items == len(entries) - 2
    results = record.results
    for r in results:
        assert r.status == (r.error_code is None)
        assert r.finished_at
        if not r.status:
            assert r.error_message
    dup_row = next(r for r in results if r.user_id == "ok-obama" and not r.status)
    assert "line 15" in dup_row.error_message and "line 2" in dup_row.error_message  # type: ignore[operator]
    assert "HTTP 404" in by_user(record)["missing"].error_message  # type: ignore[operator]
    assert "HTTP 500" in by_user(record)["server-error"].error_message  # type: ignore[operator]
    assert by_user(record)["group"].face_count == 2
    ok = next(r for r in results if r.user_id == "ok-obama" and r.status)
    assert ok.bbox is not None and len(ok.bbox) == 4
    assert ok.det_score is not None and ok.det_score > 0.6
    assert ok.quality is not None and ok.quality.face_size > 100
    face = store.get_face("ok-obama")
    assert face is not None
    assert face.thumbnail_jpeg and face.thumbnail_jpeg[:2] == b"\xff\xd8"
    assert face.source_url == entries[0].avatar_image_url
    assert store.get_face("group") is None


def test_same_person_under_two_ids_is_a_duplicate_in_one_batch(
    qtbot, manager: TaskManager, image_server: ImageServer
) -> None:
    entries = [
        UserEntry("obama-a", image_server.url("faces/identities/obama/1.jpg")),
        UserEntry("obama-b", image_server.url("faces/identities/obama/2.jpg")),
    ]
    record = run_task(qtbot, manager, lambda: manager.start_register(entries, _settings()))
    winner = [r for r in record.results if r.status]
    loser = [r for r in record.results if not r.status]
    assert len(winner) == 1
    assert len(loser) == 1
    assert loser[0].error_code == ErrorCode.DUPLICATE_FACE
    assert loser[0].duplicate_of == winner[0].user_id
    assert loser[0].similarity is not None and loser[0].similarity >= 0.45
    assert winner[0].user_id in (loser[0].error_message or "")


def test_duplicate_against_the_store_and_different_people_never(
    qtbot, manager: TaskManager, image_server: ImageServer
) -> None:
    ids = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
    first = [UserEntry(f"p-{i}", image_server.url(f"faces/identities/{i}/1.jpg")) for i in ids]
    first.append(UserEntry("p-lin", image_server.url("faces/probes/lin_manuel_miranda.png")))
    record = run_task(qtbot, manager, lambda: manager.start_register(first, _settings()))
    assert [r.error_code for r in record.results] == [None] * 6
    probes = [
        UserEntry("probe-obama", image_server.url("faces/probes/obama_small.jpg")),
        UserEntry("probe-kit", image_server.url("faces/probes/kit_harington.jpg")),
    ]
    record = run_task(qtbot, manager, lambda: manager.start_register(probes, _settings()))
    got = by_user(record)
    assert got["probe-obama"].error_code == ErrorCode.DUPLICATE_FACE
    assert got["probe-obama"].duplicate_of == "p-obama"
    assert got["probe-kit"].duplicate_of == "p-kit_harington"


def test_existing_face_replace_and_identity_check(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    url = image_server.url
    run_task(
        qtbot,
        manager,
        lambda: manager.start_register(
            [UserEntry("u", url("faces/identities/obama/1.jpg"))], _settings()
        ),
    )
    again_url = url("flaky/0/replace-precheck/identities/obama/2.jpg")
    again = run_task(
        qtbot, manager, lambda: manager.start_register([UserEntry("u", again_url)], _settings())
    )
    assert again.results[0].error_code == ErrorCode.FACE_ALREADY_REGISTERED
    assert image_server.keys["replace-precheck"] == 0  # refused before any download

    same = run_task(
        qtbot,
        manager,
        lambda: manager.start_register(
            [UserEntry("u", url("faces/identities/obama/2.jpg"))], _settings(replace=True)
        ),
    )
    r = same.results[0]
    assert r.status and r.replaced and r.warnings == []
    assert r.previous_similarity is not None and r.previous_similarity >= 0.45

    other = run_task(
        qtbot,
        manager,
        lambda: manager.start_register(
            [UserEntry("u", url("faces/identities/biden/2.jpg"))], _settings(replace=True)
        ),
    )
    r = other.results[0]
    assert r.status and r.replaced
    assert r.warnings and r.warnings[0].startswith("identity_mismatch")
    biden_face = store.get_face("u")
    assert biden_face is not None

    strict = run_task(
        qtbot,
        manager,
        lambda: manager.start_register(
            [UserEntry("u", url("faces/identities/kit_harington/2.jpg"))],
            _settings(replace=True, strict_replace=True),
        ),
    )
    r = strict.results[0]
    assert not r.status
    assert r.error_code == ErrorCode.IDENTITY_MISMATCH
    after = store.get_face("u")
    assert after is not None
    assert (after.embedding == biden_face.embedding).all()  # the old face was kept


def test_missing_users_are_not_created_when_told(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    entries = [
        UserEntry("known", image_server.url("faces/identities/rose_leslie/2.jpg")),
        UserEntry("stranger", image_server.url("faces/identities/biden/2.jpg")),
    ]
    store.add_users(["known"])
    record = run_task(
        qtbot,
        manager,
        lambda: manager.start_register(entries, _settings(create_missing_users=False)),
    )
    got = by_user(record)
    assert got["known"].status
    assert got["stranger"].error_code == ErrorCode.USER_NOT_FOUND
    assert store.existing_users(["stranger"]) == set()


def test_delete_batch_reports_every_id(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    run_task(
        qtbot,
        manager,
        lambda: manager.start_register(
            [UserEntry("d1", image_server.url("faces/identities/alex_lacamoire/1.jpg"))],
            _settings(),
        ),
    )
    store.add_users(["no-face"])
    ids = [UserEntry(u) for u in ("d1", "no-face", "ghost", "", "d1")]
    record = run_task(qtbot, manager, lambda: manager.start_delete(ids, _settings()))
    codes = [r.error_code for r in record.results]
    assert sorted(map(str, codes)) == sorted(
        map(
            str,
            [
                None,
                ErrorCode.NO_FACE_REGISTERED,
                ErrorCode.USER_NOT_FOUND,
                ErrorCode.INVALID_INPUT,
                ErrorCode.INVALID_INPUT,
            ],
        )
    )
    assert record.total_items == record.completed_items == 5
    assert store.get_face("d1") is None


def test_a_store_error_fails_only_that_user(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    """SQLite itself refuses one row (a trigger raising, as a quota or constraint would)."""
    store._conn.execute(
        "CREATE TRIGGER quota BEFORE INSERT ON faces WHEN NEW.user_id = 'cursed'"
        " BEGIN SELECT RAISE(ABORT, 'quota exceeded'); END"
    )
    entries = [
        UserEntry("cursed", image_server.url("faces/identities/kit_harington/2.jpg")),
        UserEntry("fine", image_server.url("faces/identities/rose_leslie/1.jpg")),
    ]
    record = run_task(qtbot, manager, lambda: manager.start_register(entries, _settings()))
    got = by_user(record)
    assert got["cursed"].error_code == ErrorCode.DATABASE_ERROR
    assert (
        "cursed" in got["cursed"].error_message and "quota exceeded" in got["cursed"].error_message
    )  # type: ignore[operator]
    assert got["fine"].status
    assert store.get_face("cursed") is None
    assert store.existing_users(["cursed"]) == set()


def test_store_enrolled_with_another_pack_is_refused(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    from tests.test_store_contract import OTHER_PACK, _face, _ok

    store.commit_registration(
        None, 0, _face("legacy", 1, OTHER_PACK), _ok("legacy"), replace=False, create_user=True
    )
    entries = [UserEntry("new", image_server.url("faces/identities/obama/1.jpg"))]
    with qtbot.waitSignal(manager.taskErrored, timeout=30_000) as errored:
        task_id = manager.start_register(entries, _settings())
    manager.runners[task_id].wait(10_000)
    assert "cannot be" in errored.args[1]
    record = manager.get(task_id)
    assert record is not None
    assert record.status == TaskStatus.FAILED
    assert "other-pack" in (record.error_message or "")
    assert store.get_face("new") is None


def test_cancel_stops_quickly_and_resume_runs_only_the_rest(
    qtbot, manager: TaskManager, store: SqliteStore, image_server: ImageServer
) -> None:
    fast = [
        UserEntry(f"fast-{i}", image_server.url(f"faces/identities/{p}/1.jpg"))
        for i, p in enumerate(["obama", "biden"])
    ]
    slow = [
        UserEntry(
            f"slow-{i}", image_server.url(f"slow/1500/identities/rose_leslie/{1 + i % 2}.jpg")
        )
        for i in range(12)
    ]
    settings = _settings(fetch_workers=2, quality={"duplicate_threshold": 1.0})
    with qtbot.waitSignal(manager.taskProgressed, timeout=30_000):
        task_id = manager.start_register(fast + slow, settings)
    cancelled_at = time.monotonic()
    with qtbot.waitSignal(manager.taskFinished, timeout=10_000):
        manager.cancel(task_id)
    stop_s = time.monotonic() - cancelled_at
    assert stop_s < 2.0, f"cancel took {stop_s:.2f} s"
    manager.runners[task_id].wait(10_000)
    record = manager.get(task_id)
    assert record is not None
    assert record.status == TaskStatus.CANCELLED
    cancelled = [r for r in record.results if r.error_code == ErrorCode.CANCELLED]
    assert cancelled, "some slow users must have been cancelled"
    assert record.completed_items == len(record.results) == 14
    done_before = {r.user_id for r in record.results if r.error_code != ErrorCode.CANCELLED}

    record = run_task(qtbot, manager, lambda: manager.resume(task_id))
    assert record.status == TaskStatus.COMPLETED
    assert record.completed_items == 14
    assert not [r for r in record.results if r.error_code == ErrorCode.CANCELLED]
    rerun = {r.user_id for r in record.results} - done_before
    assert rerun == {r.user_id for r in cancelled}


def test_progress_is_coalesced(qtbot, manager: TaskManager, store: SqliteStore) -> None:
    """600 users settle almost at once (all refused before download): a handful of signals."""
    import numpy as np

    from tests.test_store_contract import _face, _ok

    rng = np.random.default_rng(0)
    for i in range(600):
        face = _face(f"c{i}", i, manager.engine().identity)
        vec = rng.standard_normal(128).astype(np.float32)
        face.embedding = vec / np.linalg.norm(vec)
        store.commit_registration(None, i, face, _ok(f"c{i}"), replace=False, create_user=True)
    entries = [UserEntry(f"c{i}", "http://127.0.0.1:9/x.jpg") for i in range(600)]
    emitted: list[int] = []
    manager.taskProgressed.connect(lambda p: emitted.append(len(p.results)))
    record = run_task(qtbot, manager, lambda: manager.start_register(entries, _settings()))
    assert record.status == TaskStatus.COMPLETED
    assert {r.error_code for r in record.results} == {ErrorCode.FACE_ALREADY_REGISTERED}
    assert sum(emitted) == 600
    assert len(emitted) <= 20, f"{len(emitted)} progress signals for 600 results"
