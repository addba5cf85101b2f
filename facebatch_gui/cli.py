"""`facebatch`: run register/delete batches, dry-run a list, and inspect tasks, headless.

Batches run through the same Qt task manager as the GUI, under a QCoreApplication. Exit status:
0 when every item succeeded, 1 when any failed, 2 for bad usage, an unreadable input file or a
setup problem (no model pack, store cannot open).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from facebatch_gui import __version__
from facebatch_gui.core.errors import FaceBatchError
from facebatch_gui.core.records import ItemResult, Operation, TaskRecord, TaskStatus, UserEntry
from facebatch_gui.core.report import write_failures_csv
from facebatch_gui.core.settings import BatchSettings, MultiFacePolicy
from facebatch_gui.core.store import FaceStore, default_db_path
from facebatch_gui.core.store.config import StoreConfig, StoreKind, check_connection, open_store
from facebatch_gui.core.userlist import load_user_list

if TYPE_CHECKING:
    from facebatch_gui.core.engine import FaceEngine
    from facebatch_gui.qt.runner import TaskProgress

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, help=f"SQLite store (default: {default_db_path()})")
    p.add_argument(
        "--store",
        choices=[k.value for k in StoreKind],
        default=os.environ.get("FACEBATCH_STORE", StoreKind.SQLITE.value),
        help="face store: sqlite (default, or FACEBATCH_STORE), postgres (--dsn) or supabase "
        "(SUPABASE_URL and SUPABASE_SERVICE_KEY)",
    )
    p.add_argument("--dsn", help="PostgreSQL connection string (or FACEBATCH_DSN / DATABASE_URL)")
    p.add_argument("--supabase-url", help="Supabase project URL (or SUPABASE_URL)")
    p.add_argument("--thumbnails-bucket", help="Supabase Storage bucket for face thumbnails")


def store_config_from_args(args: argparse.Namespace) -> StoreConfig:
    """The StoreConfig that the store options name (the key only ever comes from the env)."""
    return StoreConfig(
        kind=StoreKind(getattr(args, "store", StoreKind.SQLITE.value)),
        sqlite_path=getattr(args, "db", None),
        dsn=getattr(args, "dsn", None),
        supabase_url=getattr(args, "supabase_url", None),
        thumbnails_bucket=getattr(args, "thumbnails_bucket", None),
    )


def _batch_options(p: argparse.ArgumentParser, *, register: bool) -> None:
    _store_options(p)
    p.add_argument("--json", action="store_true", help="print the final task record on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    if not register:
        return
    p.add_argument(
        "--model-dir", help="folder of an InsightFace model pack (or FACEBATCH_MODEL_DIR)"
    )
    p.add_argument("--workers", type=int, help="inference workers (default: CPU cores, max 4)")
    p.add_argument("--fetch-workers", type=int, help="concurrent downloads (default 8)")
    p.add_argument("--replace", action="store_true", help="replace users' existing faces")
    p.add_argument(
        "--strict-replace",
        action="store_true",
        help="with --replace, fail (identity_mismatch) when the new face does not match the old",
    )
    p.add_argument(
        "--create-missing-users",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create users that are not in the store (default) or fail them with user_not_found",
    )
    p.add_argument(
        "--duplicate-threshold", type=float, help="similarity that counts as the same face"
    )
    p.add_argument("--multi-face", choices=[m.value for m in MultiFacePolicy])
    p.add_argument("--min-face-size", type=int, help="smallest face side in pixels")
    p.add_argument("--det-size", type=int, help="detector input size (default 640)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facebatch", description="Register or delete the faces of many users at once."
    )
    parser.add_argument("--version", action="version", version=f"facebatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("register", help="enroll the faces of a user list")
    p.add_argument("input", help="CSV (user_id,avatar_image_url), JSON body, or a folder of photos")
    _batch_options(p, register=True)

    p = sub.add_parser("delete", help="delete the faces of users")
    p.add_argument("input", nargs="?", help='CSV with a user_id column, or JSON {"user_ids": []}')
    p.add_argument("--ids", help="comma-separated user ids instead of a file")
    _batch_options(p, register=False)

    p = sub.add_parser("validate", help="dry run: check every row and photo, write nothing")
    p.add_argument("input")
    _batch_options(p, register=True)

    p = sub.add_parser("status", help="show one task")
    p.add_argument("task_id")
    p.add_argument("--json", action="store_true")
    _store_options(p)

    p = sub.add_parser("tasks", help="list recent tasks")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    _store_options(p)

    p = sub.add_parser("resume", help="run the unfinished items of an interrupted task")
    p.add_argument("task_id")
    _batch_options(p, register=True)

    p = sub.add_parser("serve", help="run the HTTP API headless (batches via the task manager)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument(
        "--token",
        default=os.environ.get("FACEBATCH_API_TOKEN") or None,
        help="require 'Authorization: Bearer TOKEN' on every route but /health "
        "(or FACEBATCH_API_TOKEN); needed to listen beyond 127.0.0.1",
    )
    p.add_argument(
        "--allow-private-urls",
        action="store_true",
        help="let tasks download from loopback, link-local and private addresses",
    )
    p.add_argument("--max-users-per-batch", type=int, help="default 10,000")
    p.add_argument("--max-concurrent-tasks", type=int, help="default 4")
    p.add_argument("--max-body-bytes", type=int, help="default 16 MiB")
    _batch_options(p, register=True)

    p = sub.add_parser("export-failures", help="write a task's failures to CSV")
    p.add_argument("task_id")
    p.add_argument("out", type=Path)
    _store_options(p)

    p = sub.add_parser("db", help="set up or check the face store")
    db = p.add_subparsers(dest="db_command", required=True)
    q = db.add_parser("init", help="apply resources/supabase/schema.sql (idempotent)")
    _store_options(q)
    q.add_argument("--users-table", default="users", help="your users table (default users)")
    q.add_argument("--users-id-column", default="id", help="its id column (default id)")
    q.add_argument(
        "--with-vector",
        action="store_true",
        help="also add the optional pgvector column, index and match_faces (not yet verified)",
    )
    q = db.add_parser("check", help="connect and say what is wrong, if anything")
    _store_options(q)
    q.add_argument("--model-dir", help="also check that the store's faces match this pack")

    from facebatch_gui.cli_models import add_model_commands

    add_model_commands(sub)
    return parser


def settings_from_args(args: argparse.Namespace) -> BatchSettings:
    s = BatchSettings()
    q = s.quality
    updates = {
        "replace": getattr(args, "replace", False),
        "strict_replace": getattr(args, "strict_replace", False),
        "create_missing_users": getattr(args, "create_missing_users", True),
    }
    if getattr(args, "workers", None):
        updates["infer_workers"] = args.workers
    if getattr(args, "fetch_workers", None):
        updates["fetch_workers"] = args.fetch_workers
    quality = {}
    if getattr(args, "duplicate_threshold", None) is not None:
        quality["duplicate_threshold"] = args.duplicate_threshold
    if getattr(args, "multi_face", None):
        quality["multi_face"] = args.multi_face
    if getattr(args, "min_face_size", None):
        quality["min_face_size"] = args.min_face_size
    if getattr(args, "det_size", None):
        quality["det_size"] = args.det_size
    try:
        return BatchSettings.model_validate(
            {**s.model_dump(), **updates, "quality": {**q.model_dump(), **quality}}
        )
    except ValueError as exc:
        raise UsageError(f"Invalid option: {exc}") from exc


def _open_store(args: argparse.Namespace) -> FaceStore:
    store = open_store(store_config_from_args(args))
    interrupted = store.recover_interrupted()
    if interrupted:
        print(
            f"facebatch: {len(interrupted)} task(s) were interrupted; resume with "
            f"'facebatch resume TASK_ID': {', '.join(interrupted)}",
            file=sys.stderr,
        )
    return store


def _load_engine(args: argparse.Namespace, settings: BatchSettings) -> FaceEngine:
    from facebatch_gui.core.engine import FaceEngine

    return FaceEngine.load(
        getattr(args, "model_dir", None),
        det_size=settings.quality.det_size,
        det_threshold=settings.quality.det_threshold,
    )


def _entries(args: argparse.Namespace, operation: Operation) -> list[UserEntry]:
    if getattr(args, "ids", None):
        return [UserEntry(uid.strip(), "") for uid in args.ids.split(",")]
    if not args.input:
        raise UsageError("Give an input file or --ids")
    return load_user_list(args.input, operation)


def _run(args: argparse.Namespace, start: str) -> int:
    """Run one task through the TaskManager under a QCoreApplication; print as it goes."""
    from PySide6.QtCore import QCoreApplication, QTimer
    from tqdm import tqdm

    from facebatch_gui.qt.runner import TaskManager

    operation = Operation.DELETE if start == "delete" else Operation.REGISTER
    settings = settings_from_args(args)
    store = _open_store(args)
    if start == "resume":
        record = store.get_task(args.task_id, with_results=False)
        if record is None:
            raise UsageError(f"No task {args.task_id} in {store_config_from_args(args).describe()}")
        operation = record.operation
        entries: list[UserEntry] = []
    else:
        entries = _entries(args, operation)
    engine = _load_engine(args, settings) if operation == Operation.REGISTER else None
    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    manager = TaskManager(store, engine)
    collected: list[ItemResult] = []
    errors: list[str] = []
    if start == "validate":
        task_id = manager.start_validate(entries, settings)
        total = len(entries)
    elif start == "resume":
        task_id = manager.resume(args.task_id)
        total = manager.runners[task_id].total
    elif operation == Operation.DELETE:
        task_id = manager.start_delete(entries, settings)
        total = len(entries)
    else:
        task_id = manager.start_register(entries, settings)
        total = len(entries)
    runner = manager.runners[task_id]
    bar = tqdm(
        total=total,
        initial=runner.completed,
        unit="user",
        file=sys.stderr,
        disable=True if args.quiet else None,
        desc=start,
    )

    def on_progress(progress: TaskProgress) -> None:
        collected.extend(progress.results)
        bar.update(len(progress.results))
        bar.set_postfix(failed=progress.failed, refresh=False)

    manager.taskProgressed.connect(on_progress)
    manager.taskErrored.connect(lambda _tid, message: errors.append(message))
    manager.taskFinished.connect(lambda _tid: app.quit())
    previous = signal.signal(signal.SIGINT, lambda *_: manager.cancel(task_id))
    ticker = QTimer()  # lets Python run its signal handler while Qt's loop waits
    ticker.start(200)
    ticker.timeout.connect(lambda: None)
    try:
        if runner.running:
            app.exec()
        runner.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        ticker.stop()
        bar.close()
    if start == "validate":
        record = _ephemeral_record(task_id, operation, collected, total, errors)
    else:
        record = store.get_task(task_id)
        assert record is not None
    return _report(args, record, errors)


def _ephemeral_record(
    task_id: str, operation: Operation, results: list[ItemResult], total: int, errors: list[str]
) -> TaskRecord:
    from facebatch_gui.core.records import utc_now

    failed = sum(1 for r in results if not r.status)
    now = utc_now()
    return TaskRecord(
        task_id=task_id,
        operation=operation,
        status=TaskStatus.FAILED if errors else TaskStatus.COMPLETED,
        progress=TaskRecord.progress_of(len(results), total),
        total_items=total,
        completed_items=len(results),
        failed_items=failed,
        results=results,
        error_message="; ".join(errors) or None,
        created_at=now,
        updated_at=now,
    )


def _report(args: argparse.Namespace, record: TaskRecord, errors: list[str]) -> int:
    if args.json:
        print(json.dumps(record.wire(), indent=2, ensure_ascii=False))
    if not args.quiet:
        _print_summary(record)
    if errors or record.status == TaskStatus.FAILED:
        return EXIT_FAILURES
    return (
        EXIT_OK
        if record.failed_items == 0 and record.completed_items == record.total_items
        else EXIT_FAILURES
    )


def _print_summary(record: TaskRecord) -> None:
    out = sys.stderr
    ok = record.completed_items - record.failed_items
    print(
        f"Task {record.task_id} ({record.operation.value}): {record.status.value}; "
        f"{ok} succeeded, {record.failed_items} failed, {record.total_items} in all",
        file=out,
    )
    if record.error_message:
        print(f"  {record.error_message}", file=out)
    codes = Counter(str(r.error_code) for r in record.results if not r.status)
    for code, n in codes.most_common():
        print(f"  {n:6d}  {code}", file=out)
    failures = [r for r in record.results if not r.status]
    for r in failures[:20]:
        print(f"  - {r.user_id or '(empty id)'}: [{r.error_code}] {r.error_message}", file=out)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more (facebatch export-failures)", file=out)
    warned = [r for r in record.results if r.warnings]
    for r in warned[:20]:
        for w in r.warnings:
            print(f"  ! {r.user_id}: {w}", file=out)


def _status(args: argparse.Namespace) -> int:
    store = _open_store(args)
    record = store.get_task(args.task_id)
    if record is None:
        raise UsageError(f"No task {args.task_id} in {store_config_from_args(args).describe()}")
    if args.json:
        print(json.dumps(record.wire(), indent=2, ensure_ascii=False))
    else:
        _print_summary(record)
    return EXIT_OK


def _tasks(args: argparse.Namespace) -> int:
    store = _open_store(args)
    records = store.list_tasks(args.limit)
    if args.json:
        print(json.dumps([r.wire() for r in records], indent=2))
        return EXIT_OK
    print(
        f"{'task_id':36}  {'operation':9}  {'status':11}  {'done':>11}  {'failed':>6}  created_at"
    )
    for r in records:
        print(
            f"{r.task_id:36}  {r.operation.value:9}  {r.status.value:11}  "
            f"{r.completed_items:>5}/{r.total_items:<5}  {r.failed_items:>6}  {r.created_at}"
        )
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    store = _open_store(args)
    record = store.get_task(args.task_id)
    if record is None:
        raise UsageError(f"No task {args.task_id} in {store_config_from_args(args).describe()}")
    count = write_failures_csv(record.results, args.out)
    print(f"Wrote {count} failure(s) to {args.out}", file=sys.stderr)
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    """The HTTP API with the task manager on this (main) thread under a QCoreApplication.

    SIGINT/SIGTERM: stop taking requests, cancel running tasks (their unfinished users are recorded
    `cancelled`, resumable), wait for them, exit 0. --json prints {"url": ...} once listening.
    """
    from PySide6.QtCore import QCoreApplication, QTimer

    from facebatch_gui.api import ApiConfig, ApiServer, check_exposure
    from facebatch_gui.qt.runner import TaskManager
    from facebatch_gui.qt.service import QtTaskService

    limits = {
        k: v
        for k, v in (
            ("max_users_per_batch", args.max_users_per_batch),
            ("max_concurrent_tasks", args.max_concurrent_tasks),
            ("max_body_bytes", args.max_body_bytes),
        )
        if v is not None
    }
    try:
        config = ApiConfig(
            enabled=True,
            host=args.host,
            port=args.port,
            token=args.token,
            allow_private_urls=args.allow_private_urls,
            **limits,
        )
    except ValueError as exc:
        raise UsageError(f"Invalid option: {exc}") from exc
    check_exposure(config)  # before loading models: refuse fast
    settings = settings_from_args(args)
    store = _open_store(args)
    engine = _load_engine(args, settings)
    app = QCoreApplication.instance() or QCoreApplication(sys.argv[:1])
    manager = TaskManager(store, engine)
    service = QtTaskService(manager)
    server = ApiServer(service, config, settings=settings)
    url = server.start()
    if args.json:
        print(json.dumps({"url": url, "openapi": f"{url}/openapi.json"}), flush=True)
    if not args.quiet:
        print(f"facebatch: HTTP API on {url} (docs at {url}/docs); Ctrl-C stops", file=sys.stderr)
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        app.quit()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    ticker = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    try:
        app.exec()
    finally:
        ticker.stop()
        service.close()  # callers waiting on the manager get 503 now, not after a timeout
        server.stop()
        running = [tid for tid, r in manager.runners.items() if r.running]
        for task_id in running:
            manager.cancel(task_id)
        manager.wait_all(60_000)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
    if not args.quiet:
        note = (
            f"; cancelled {len(running)} running task(s): {', '.join(running)}" if running else ""
        )
        print(f"facebatch: HTTP API stopped{note}", file=sys.stderr)
    return EXIT_OK


def _db(args: argparse.Namespace) -> int:
    config = store_config_from_args(args)
    if args.db_command == "check":
        pack = None
        if args.model_dir:
            pack = _load_engine(args, BatchSettings()).identity
        report = check_connection(config, pack)
        print(report.message)
        return EXIT_OK if report.ok else EXIT_FAILURES
    if config.kind == StoreKind.SQLITE:
        open_store(config).close()  # the SQLite store creates its schema on open
    elif config.kind == StoreKind.POSTGRES:
        from facebatch_gui.core.store.postgres import apply_schema

        dsn = config.resolved_dsn()
        if not dsn:
            raise UsageError("db init --store postgres needs --dsn (or FACEBATCH_DSN)")
        apply_schema(
            dsn,
            users_table=args.users_table,
            users_id_column=args.users_id_column,
            with_vector=args.with_vector,
        )
    else:
        raise UsageError(
            "Supabase's REST API cannot run DDL: apply resources/supabase/schema.sql in the "
            "SQL editor, or run 'facebatch db init --store postgres --dsn <the project's direct "
            "connection string>'"
        )
    print(f"Schema ready in {config.describe()}", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--self-check" in argv:  # the spelling: `facebatch --self-check --model-dir DIR`
        argv.remove("--self-check")
        argv.insert(0, "self-check")
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("models", "self-check"):
            from facebatch_gui.cli_models import run_model_command

            return run_model_command(args)
        if args.command in ("register", "delete", "validate", "resume"):
            return _run(args, args.command)
        if args.command == "status":
            return _status(args)
        if args.command == "tasks":
            return _tasks(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args)
        return _export(args)
    except (UsageError, FaceBatchError) as exc:
        print(f"facebatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
