"""The HTTP API in process: a real uvicorn server on an ephemeral 127.0.0.1 port, real httpx
clients, the real TaskManager in the Qt thread (pytest-qt), real models, photos and SQLite."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from facebatch_gui.api import ApiConfig, ApiConfigError, ApiServer
from facebatch_gui.core.records import TaskRecord, UserEntry
from facebatch_gui.core.service import ServiceUnavailable, TaskService
from facebatch_gui.core.settings import BatchSettings, FetchSettings
from facebatch_gui.core.store import SqliteStore
from facebatch_gui.qt.runner import TaskManager
from facebatch_gui.qt.service import QtTaskService
from tests.support.apiclient import ApiClient
from tests.support.imageserver import ImageServer

SETTINGS = BatchSettings(fetch=FetchSettings(backoff_s=0.01, retries=1, read_timeout_s=10))
RECORD_FIELDS = set(TaskRecord.model_fields)
SEED_FIELDS = {
    "task_id",
    "status",
    "progress",
    "total_items",
    "completed_items",
    "failed_items",
    "results",
    "error_message",
    "created_at",
    "updated_at",
}


@pytest.fixture
def manager(store: SqliteStore, engine) -> Iterator[TaskManager]:
    m = TaskManager(store, engine)
    yield m
    for runner in m.runners.values():
        runner.cancel()
    m.wait_all(30_000)


@pytest.fixture
def service(manager: TaskManager) -> Iterator[QtTaskService]:
    s = QtTaskService(manager, timeout_s=20)
    yield s
    s.close()


ServeFn = Callable[..., ApiClient]


@pytest.fixture
def serve(qtbot, service: QtTaskService) -> Iterator[ServeFn]:
    """Start an ApiServer with this config on 127.0.0.1:0; stopped (and clients closed) after."""
    servers: list[ApiServer] = []
    clients: list[ApiClient] = []

    def start(*, token_for_client: str | None = None, **config: object) -> ApiClient:
        server = ApiServer(service, ApiConfig(port=0, **config), settings=SETTINGS)  # type: ignore[arg-type]
        servers.append(server)
        url = server.start()
        client = ApiClient(qtbot, url, token=token_for_client or config.get("token"))  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


def test_seed_register_and_status_shapes(
    serve: ServeFn, image_server: ImageServer, store: SqliteStore
) -> None:
    api = serve(allow_private_urls=True)  # the photo server is on loopback: allowed explicitly
    body = {
        "users": [
            {
                "user_id": "obama",
                "avatar_image_url": image_server.url("faces/identities/obama/1.jpg"),
            },
            {"user_id": "gone", "avatar_image_url": image_server.url("status/404")},
        ]
    }
    response = api.post("/faces/batch-register", json=body)
    assert response.status_code == 200, response.text
    started = response.json()
    assert set(started) == {"task_id", "message", "total_users"}
    assert started["message"] == "Batch face registration started in background"
    assert started["total_users"] == 2
    assert str(uuid.UUID(started["task_id"])) == started["task_id"]

    record = api.wait_final(started["task_id"])
    assert set(record) >= SEED_FIELDS and set(record) == RECORD_FIELDS
    assert (record["status"], record["progress"]) == ("completed", 100)
    assert (record["total_items"], record["completed_items"], record["failed_items"]) == (2, 2, 1)
    results = {r["user_id"]: r for r in record["results"]}
    assert results["obama"]["status"] is True
    assert results["gone"]["status"] is False and results["gone"]["error_code"] == "download_failed"
    stored = store.get_task(started["task_id"])
    assert stored is not None and record == stored.wire()  # the CLI's status --json, exactly
    assert store.get_face("obama") is not None

    listed = api.get("/faces/tasks", params={"limit": 5})
    assert listed.status_code == 200
    assert [t["task_id"] for t in listed.json()] == [started["task_id"]]
    assert listed.json()[0]["results"] == []

    deleted = api.post("/faces/batch-delete", json={"user_ids": ["obama", "nobody"]})
    assert deleted.status_code == 200
    assert deleted.json()["message"] == "Batch face deletion started in background"
    assert deleted.json()["total_users"] == 2
    record = api.wait_final(deleted.json()["task_id"])
    codes = {r["user_id"]: r["error_code"] for r in record["results"]}
    assert codes == {"obama": None, "nobody": "user_not_found"}
    assert store.get_face("obama") is None


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/faces/batch-register", {}, ["body", "users"]),
        ("/faces/batch-register", {"users": []}, ["body", "users"]),
        (
            "/faces/batch-register",
            {"users": [{"user_id": "a"}]},
            ["body", "users", 0, "avatar_image_url"],
        ),
        (
            "/faces/batch-register",
            {"users": [{"user_id": 7, "avatar_image_url": "x"}]},
            ["body", "users", 0, "user_id"],
        ),
        ("/faces/batch-register", {"users": "alice"}, ["body", "users"]),
        ("/faces/batch-delete", {"user_ids": []}, ["body", "user_ids"]),
        ("/faces/batch-delete", {"user_ids": [None]}, ["body", "user_ids", 0]),
        ("/faces/batch-delete", [], ["body"]),
    ],
)
def test_malformed_bodies_get_422_naming_the_field(
    serve: ServeFn, service: QtTaskService, path: str, body: object, loc: list[object]
) -> None:
    api = serve()
    response = api.post(path, json=body)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert service.list_tasks() == []  # nothing started


def test_not_json_and_too_many_users_are_422(serve: ServeFn, service: QtTaskService) -> None:
    api = serve(max_users_per_batch=3)
    raw = api.post(
        "/faces/batch-register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status_code == 422
    assert raw.json()["detail"][0]["type"] == "json_invalid"
    for junk in (b"j\x80\x14 \x01", b"[" * 100_000):  # not UTF-8; nesting too deep
        response = api.post(
            "/faces/batch-delete", content=junk, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body"]
        assert response.json()["detail"][0]["msg"].startswith("Body is not valid JSON")
    many = {
        "users": [
            {"user_id": f"u{i}", "avatar_image_url": "https://x.test/a.jpg"} for i in range(4)
        ]
    }
    response = api.post("/faces/batch-register", json=many)
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "users"] and "at most 3" in error["msg"]
    response = api.post("/faces/batch-delete", json={"user_ids": ["a", "b", "c", "d"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "user_ids"]
    assert service.list_tasks() == []


def test_unknown_task_is_404_and_bad_limit_422(serve: ServeFn) -> None:
    api = serve()
    for method, path in [
        ("GET", "/faces/task-status/00000000-0000-0000-0000-000000000000"),
        ("GET", "/faces/task-status/not-a-uuid"),
        ("POST", "/faces/tasks/00000000-0000-0000-0000-000000000000/cancel"),
    ]:
        response = api.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert response.json() == {"detail": "Task not found"}
    assert api.get("/faces/tasks", params={"limit": 0}).status_code == 422
    assert api.get("/faces/tasks", params={"limit": "x"}).json()["detail"][0]["loc"] == [
        "query",
        "limit",
    ]
    assert api.get("/health").json()["status"] == "ok"


def test_body_over_the_limit_is_413_declared_or_streamed(
    serve: ServeFn, service: QtTaskService
) -> None:
    api = serve(max_body_bytes=4096)
    users = [
        {"user_id": f"user-{i}", "avatar_image_url": f"https://x.test/{i}.jpg"} for i in range(200)
    ]
    response = api.post("/faces/batch-register", json={"users": users})
    assert response.status_code == 413
    assert "4,096" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"user_ids": ['
        for i in range(1000):
            yield f'"user-{i}",'.encode()
        yield b'"last"]}'

    response = api.post(
        "/faces/batch-delete", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    small = api.post("/faces/batch-delete", json={"user_ids": ["nobody"]})
    assert small.status_code == 200
    api.wait_final(small.json()["task_id"])
    assert len(service.list_tasks()) == 1


def test_token_guards_every_route_but_health(serve: ServeFn, qtbot) -> None:
    token = "s3cret-token"
    api = serve(token=token)
    anon = ApiClient(qtbot, str(api.client.base_url))
    wrong = ApiClient(qtbot, str(api.client.base_url), token="s3cret-tokeN")
    try:
        assert anon.get("/health").status_code == 200
        for client in (anon, wrong):
            for method, path, kw in [
                ("GET", "/faces/tasks", {}),
                ("GET", "/faces/task-status/x", {}),
                ("POST", "/faces/tasks/x/cancel", {}),
                ("POST", "/faces/batch-delete", {"json": {"user_ids": ["a"]}}),
                ("POST", "/faces/batch-register", {"content": b"{broken"}),  # 401 before 422
                ("GET", "/openapi.json", {}),
                ("GET", "/docs", {}),
            ]:
                response = client.request(method, path, **kw)
                assert response.status_code == 401, (path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        basic = anon.get("/faces/tasks", headers={"Authorization": f"Basic {token}"})
        assert basic.status_code == 401
        assert api.get("/faces/tasks").status_code == 200
        assert api.get("/faces/task-status/x").status_code == 404
        schema = api.get("/openapi.json").json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
    finally:
        anon.close()
        wrong.close()


def test_private_and_local_urls_refused_per_user_by_default(
    serve: ServeFn, image_server: ImageServer, tmp_path, faces_dir
) -> None:
    """Default config: the loopback photo server, 'localhost', metadata, files: all refused."""
    api = serve()
    photo = image_server.url("faces/identities/obama/1.jpg")
    users = [
        {"user_id": "loop", "avatar_image_url": photo},
        {"user_id": "named", "avatar_image_url": photo.replace("127.0.0.1", "localhost")},
        {"user_id": "meta", "avatar_image_url": "http://169.254.169.254/latest/meta-data/"},
        {"user_id": "file", "avatar_image_url": f"file://{faces_dir}/identities/obama/1.jpg"},
        {"user_id": "path", "avatar_image_url": str(faces_dir / "identities/obama/1.jpg")},
        {"user_id": "ftp", "avatar_image_url": "ftp://example.org/a.jpg"},
    ]
    hits_before = image_server.hits["/faces/identities/obama/1.jpg"]
    response = api.post("/faces/batch-register", json={"users": users})
    assert response.status_code == 200
    record = api.wait_final(response.json()["task_id"])
    results = {r["user_id"]: r for r in record["results"]}
    assert record["failed_items"] == 6
    assert all(r["error_code"] == "invalid_input" for r in results.values())
    assert "loopback" in results["loop"]["error_message"]
    assert "localhost resolves to 127.0.0.1" in results["named"]["error_message"]
    assert "link-local" in results["meta"]["error_message"]
    assert "only http(s)" in results["file"]["error_message"]
    assert "only http(s)" in results["path"]["error_message"]
    assert "scheme" in results["ftp"]["error_message"]
    assert image_server.hits["/faces/identities/obama/1.jpg"] == hits_before  # never reached


def test_concurrent_tasks_run_side_by_side_and_the_limit_is_429(
    serve: ServeFn, image_server: ImageServer, service: QtTaskService
) -> None:
    api = serve(allow_private_urls=True, max_concurrent_tasks=3)
    people = ["obama", "biden", "kit_harington"]
    bodies = [
        {
            "users": [
                {
                    "user_id": f"{p}-{n}",
                    "avatar_image_url": image_server.url(f"slow/1500/identities/{p}/{n}.jpg"),
                }
                for n in (1, 2)
            ]
        }
        for p in people
    ]
    futures = [api.submit("POST", "/faces/batch-register", json=b) for b in bodies]
    started = [api.wait(f) for f in futures]
    assert [r.status_code for r in started] == [200, 200, 200]
    ids = [r.json()["task_id"] for r in started]
    assert len(set(ids)) == 3
    assert service.running_count() == 3
    over = api.post("/faces/batch-delete", json={"user_ids": ["x"]})
    assert over.status_code == 429
    assert over.headers["retry-after"] == "5"
    assert "limit is 3" in over.json()["detail"]

    records = [api.wait_final(tid) for tid in ids]
    for person, record in zip(people, records, strict=True):
        assert record["status"] == "completed"
        got = {r["user_id"]: r["status"] for r in record["results"]}
        # Two photos of one person under two ids: the second is the first's duplicate.
        assert sorted(got) == [f"{person}-1", f"{person}-2"]
        assert sum(got.values()) >= 1
    assert api.post("/faces/batch-delete", json={"user_ids": ["x"]}).status_code == 200


def test_cancel_over_http(serve: ServeFn, image_server: ImageServer, store: SqliteStore) -> None:
    api = serve(allow_private_urls=True)
    users = [
        {
            "user_id": f"slow-{i}",
            "avatar_image_url": image_server.url(f"slow/3000/identities/obama/1.jpg?c={i}"),
        }
        for i in range(4)
    ]
    task_id = api.post("/faces/batch-register", json={"users": users}).json()["task_id"]
    response = api.post(f"/faces/tasks/{task_id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["task_id"] == task_id
    assert response.json()["message"] == "Cancellation requested"
    record = api.wait_final(task_id, timeout_s=30)
    assert record["status"] == "cancelled"
    assert any(r["error_code"] == "cancelled" for r in record["results"])
    again = api.post(f"/faces/tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    stored = store.get_task(task_id)
    assert stored is not None and stored.status.is_resumable


def test_http_task_fires_the_managers_signals_in_the_qt_thread(
    qtbot, serve: ServeFn, manager: TaskManager, image_server: ImageServer
) -> None:
    """What the GUI's task history listens to: taskStarted/taskProgressed/taskFinished."""
    api = serve(allow_private_urls=True)
    seen_threads: list[bool] = []
    manager.taskProgressed.connect(
        lambda _p: seen_threads.append(threading.current_thread() is threading.main_thread())
    )
    body = {
        "users": [
            {
                "user_id": "rose",
                "avatar_image_url": image_server.url("faces/identities/rose_leslie/1.jpg"),
            }
        ]
    }
    with qtbot.waitSignal(manager.taskStarted, timeout=20_000) as started:
        response = api.post("/faces/batch-register", json=body)
    task_id = response.json()["task_id"]
    assert started.args == [task_id]
    assert task_id in manager.runners
    with qtbot.waitSignal(manager.taskFinished, timeout=60_000) as finished:
        pass
    assert finished.args == [task_id]
    assert seen_threads and all(seen_threads)
    manager.runners[task_id].wait(10_000)


def test_task_started_in_the_manager_is_readable_over_http(
    qtbot, serve: ServeFn, manager: TaskManager, image_server: ImageServer
) -> None:
    api = serve()
    entries = [UserEntry("biden", image_server.url("faces/identities/biden/1.jpg"), 1)]
    with qtbot.waitSignal(manager.taskFinished, timeout=60_000):
        task_id = manager.start_register(entries, SETTINGS)  # as the GUI does: operator settings
    manager.runners[task_id].wait(10_000)
    response = api.get(f"/faces/task-status/{task_id}")
    assert response.status_code == 200
    record = manager.get(task_id)
    assert record is not None and response.json() == record.wire()
    assert response.json()["results"][0]["status"] is True
    assert task_id in [t["task_id"] for t in api.get("/faces/tasks").json()]


def test_busy_manager_thread_gives_503_and_starts_nothing(
    serve: ServeFn, service: QtTaskService, store: SqliteStore
) -> None:
    """The Qt thread is kept busy (not processing events) past the service's timeout."""
    service.timeout_s = 0.5
    api = serve()
    future = api.submit("POST", "/faces/batch-delete", json={"user_ids": ["a"]})
    deadline = time.monotonic() + 10
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)  # the manager's thread does not serve events meanwhile
    response = future.result(timeout=1)
    assert response.status_code == 503
    assert "did not answer within 0.5 s" in response.json()["detail"]
    api.qtbot.wait(200)  # let the queued call arrive now: it must not start a task
    assert store.list_tasks() == []


def test_service_from_another_thread_and_after_close(
    qtbot, service: QtTaskService, manager: TaskManager
) -> None:
    assert isinstance(service, TaskService)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(service.start_delete, [UserEntry("ghost", "")], SETTINGS)
        qtbot.waitUntil(future.done, timeout=10_000)
        task_id = future.result()
    assert task_id in manager.runners
    manager.runners[task_id].wait(10_000)
    service.close()
    with ThreadPoolExecutor(1) as pool, pytest.raises(ServiceUnavailable, match="shutting down"):
        pool.submit(service.running_count).result(timeout=5)


def test_server_binds_port_zero_refuses_exposure_and_port_in_use(
    service: QtTaskService,
) -> None:
    server = ApiServer(service, ApiConfig(port=0))
    url = server.start()
    try:
        assert server.port and url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        clash = ApiServer(service, ApiConfig(port=server.port))
        with pytest.raises(ApiConfigError, match="Cannot listen"):
            clash.start()
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
    for host in ("0.0.0.0", "192.0.2.10", "example.org"):
        with pytest.raises(ApiConfigError, match="without a token"):
            ApiServer(service, ApiConfig(host=host, port=0)).start()


def test_ephemeral_port_is_free_after_stop(service: QtTaskService) -> None:
    server = ApiServer(service, ApiConfig(port=0))
    server.start()
    port = server.port
    server.stop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))  # raises if the server still held it
    assert not server.running


def test_http_tasks_refuse_local_files_even_when_operator_settings_allow_them() -> None:
    """The settings an HTTP task runs with: a pure function of the app's context, so the service
    is a stand-in that is never called."""
    from facebatch_gui.api.routes import ApiContext

    operator = BatchSettings(replace=True, fetch=FetchSettings(allow_local=True))

    class _Null:
        pass

    ctx = ApiContext(service=_Null(), config=ApiConfig(), settings=lambda: operator)  # type: ignore[arg-type]
    s = ctx.task_settings()
    assert s.replace is True
    assert (s.fetch.allow_local, s.fetch.allow_private_networks) == (False, False)
    ctx = ApiContext(
        service=_Null(), config=ApiConfig(allow_private_urls=True), settings=lambda: operator
    )  # type: ignore[arg-type]
    assert ctx.task_settings().fetch.allow_private_networks is True
    assert ctx.task_settings().fetch.allow_local is False


def test_api_config_round_trips_as_json_for_the_gui() -> None:
    config = ApiConfig(
        port=8123, token="t", allow_private_urls=True, allowed_networks=["10.0.5.0/24"]
    )
    assert ApiConfig.model_validate_json(config.model_dump_json()) == config
    assert ApiConfig(token="").token is None  # an emptied settings field means no token
    with pytest.raises(ValueError, match=r"10\.0\.5"):
        ApiConfig(allowed_networks=["10.0.5"])
    with pytest.raises(ValueError, match="less than or equal to 65535"):
        ApiConfig(port=70_000)
