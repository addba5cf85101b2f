"""Which face store to use, how to open it, and a plain-language connection check.

The GUI settings dialog, the CLI and `facebatch serve` all go through `StoreConfig`:

    config = StoreConfig(kind="postgres", dsn="postgresql://...")
    report = check_connection(config, engine.identity)   # "Test connection" button
    if report.ok: store = open_store(config)

Secrets: the Supabase service-role key is read from `SUPABASE_SERVICE_KEY` unless given
explicitly, and `persisted()` (what the settings file stores) never contains it, nor the password
in a DSN (use PGPASSWORD / ~/.pgpass, or FACEBATCH_DSN / DATABASE_URL, for those).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.errors import StoreError
from facebatch_gui.core.store.base import FaceStore

DSN_ENVS = ("FACEBATCH_DSN", "DATABASE_URL")
SUPABASE_URL_ENV = "SUPABASE_URL"
SUPABASE_KEY_ENV = "SUPABASE_SERVICE_KEY"


class StoreKind(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgres"
    SUPABASE = "supabase"


class Problem(StrEnum):
    """Why a connection check failed; the GUI may pick an icon or a help link by it."""

    UNREACHABLE = "unreachable"
    BAD_CREDENTIALS = "bad_credentials"
    SCHEMA_MISSING = "schema_missing"
    WRONG_PACK = "wrong_pack"
    MISCONFIGURED = "misconfigured"
    ERROR = "error"


class StoreConfig(BaseModel):
    kind: StoreKind = StoreKind.SQLITE
    sqlite_path: Path | None = Field(None, description="SQLite file; default: user data folder")
    dsn: SecretStr | None = Field(
        None, description="Postgres connection string; default: FACEBATCH_DSN or DATABASE_URL"
    )
    supabase_url: str | None = Field(None, description="Project URL; default: SUPABASE_URL")
    supabase_key: SecretStr | None = Field(
        None, exclude=True, description="Service-role key; default: SUPABASE_SERVICE_KEY"
    )
    users_table: str = Field("users", description="Users table (used by db init)")
    users_id_column: str = Field("id", description="Its id column (used by db init)")
    thumbnails_bucket: str | None = Field(
        None, description="Supabase Storage bucket for face thumbnails; none: kept in the row"
    )

    def resolved_dsn(self) -> str | None:
        if self.dsn is not None and self.dsn.get_secret_value():
            return self.dsn.get_secret_value()
        return next((os.environ[e] for e in DSN_ENVS if os.environ.get(e)), None)

    def resolved_supabase_url(self) -> str | None:
        return self.supabase_url or os.environ.get(SUPABASE_URL_ENV) or None

    def resolved_supabase_key(self) -> str | None:
        if self.supabase_key is not None and self.supabase_key.get_secret_value():
            return self.supabase_key.get_secret_value()
        return os.environ.get(SUPABASE_KEY_ENV) or None

    def persisted(self) -> dict[str, Any]:
        """What a settings file may hold: no service key, no password inside the DSN."""
        data = self.model_dump(mode="json", exclude={"supabase_key", "dsn"})
        if self.dsn is not None:
            data["dsn"] = _without_password(self.dsn.get_secret_value())
        return data

    def describe(self) -> str:
        """Where the store is, for messages (no secrets)."""
        if self.kind == StoreKind.SQLITE:
            from facebatch_gui.core.store.sqlite import default_db_path

            return f"SQLite {self.sqlite_path or default_db_path()}"
        if self.kind == StoreKind.POSTGRES:
            dsn = self.resolved_dsn()
            return f"PostgreSQL {_without_password(dsn) if dsn else '(no DSN)'}"
        return f"Supabase {self.resolved_supabase_url() or '(no URL)'}"


class ConnectionReport(BaseModel):
    ok: bool
    message: str
    problem: Problem | None = None
    faces: int | None = Field(None, description="Faces enrolled in the store, when it was reached")


def open_store(config: StoreConfig, *, quick: bool = False) -> FaceStore:
    """Open the configured store; StoreError says what is missing or wrong.

    `quick`: fail fast (one retry, short timeouts), for a connection check."""
    if config.kind == StoreKind.SQLITE:
        from facebatch_gui.core.store.sqlite import SqliteStore

        return SqliteStore(config.sqlite_path)
    if config.kind == StoreKind.POSTGRES:
        from facebatch_gui.core.store.postgres import PostgresStore

        dsn = config.resolved_dsn()
        if not dsn:
            raise StoreError(
                "No PostgreSQL connection string: give --dsn or set FACEBATCH_DSN / DATABASE_URL"
            )
        return PostgresStore(dsn, connect_timeout_s=5 if quick else 10)
    from facebatch_gui.core.store.supabase import SupabaseStore

    url, key = config.resolved_supabase_url(), config.resolved_supabase_key()
    if not url or not key:
        raise StoreError(
            "Supabase needs a project URL and a service-role key: set SUPABASE_URL and "
            "SUPABASE_SERVICE_KEY (or give them in the settings)"
        )
    if quick:
        return SupabaseStore(
            url, key, thumbnails_bucket=config.thumbnails_bucket, retries=1, timeout_s=10
        )
    return SupabaseStore(url, key, thumbnails_bucket=config.thumbnails_bucket)


def check_connection(config: StoreConfig, pack: PackIdentity | None = None) -> ConnectionReport:
    """Try the configured store and say, in plain words, what is wrong if anything.

    Distinguishes: unreachable, bad credentials, schema missing, wrong pack (the store holds faces
    of another embedding space than `pack`). Never raises for those.
    """
    if config.kind == StoreKind.POSTGRES:
        dsn = config.resolved_dsn()
        if not dsn:
            return ConnectionReport(
                ok=False,
                problem=Problem.MISCONFIGURED,
                message="No PostgreSQL connection string (DSN) is set.",
            )
        early = _diagnose_postgres(dsn)
        if early is not None:
            return early
    if config.kind == StoreKind.SUPABASE and not (
        config.resolved_supabase_url() and config.resolved_supabase_key()
    ):
        return ConnectionReport(
            ok=False,
            problem=Problem.MISCONFIGURED,
            message="Supabase needs the project URL and the service-role key "
            "(SUPABASE_URL / SUPABASE_SERVICE_KEY).",
        )
    try:
        store = open_store(config, quick=True)
    except StoreError as exc:
        return ConnectionReport(ok=False, problem=_classify(str(exc)), message=str(exc))
    try:
        counts = _space_counts(store)
    except Exception as exc:  # noqa: BLE001 - the report is the answer
        return ConnectionReport(ok=False, problem=_classify(str(exc)), message=str(exc))
    finally:
        store.close()
    total = sum(n for n, _ in counts.values())
    where = config.describe()
    if pack is not None:
        foreign = {space: v for space, v in counts.items() if space != pack.space}
        if foreign:
            packs = ", ".join(f"{n} faces of pack '{name}'" for n, name in foreign.values())
            return ConnectionReport(
                ok=False,
                problem=Problem.WRONG_PACK,
                faces=total,
                message=f"Connected to {where}, but it holds {packs}, enrolled with another "
                f"recogniser than the loaded pack '{pack.name}': their faces cannot be compared. "
                "Load the pack the store was enrolled with.",
            )
    return ConnectionReport(
        ok=True, faces=total, message=f"Connected to {where}: {total} faces enrolled."
    )


def _space_counts(store: FaceStore) -> dict[str, tuple[int, str]]:
    """pack space -> (faces, pack name), asked of whichever store this is."""
    counts = getattr(store, "space_counts", None)
    if counts is not None:
        result: dict[str, tuple[int, str]] = counts()
        return result
    from facebatch_gui.core.engine import PackIdentity as _Pack
    from facebatch_gui.core.store.sqlite import SqliteStore

    assert isinstance(store, SqliteStore)
    rows = store._query("SELECT pack_space, pack, COUNT(*) FROM faces GROUP BY pack_space, pack")
    return {space: (int(n), _Pack.from_json(pack).name) for space, pack, n in rows}


def _diagnose_postgres(dsn: str) -> ConnectionReport | None:
    import psycopg

    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        text = str(exc).strip()
        return ConnectionReport(ok=False, problem=_classify(text), message=text)
    return None


def _classify(text: str) -> Problem:
    low = text.lower()
    if any(
        s in low
        for s in ("password authentication", "invalid api key", "jwt", "no password", "401")
    ) or ("role" in low and "does not exist" in low):
        return Problem.BAD_CREDENTIALS
    if "schema" in low and ("missing" in low or "db init" in low):
        return Problem.SCHEMA_MISSING
    if any(
        s in low
        for s in (
            "connection refused",
            "could not connect",
            "cannot connect",
            "could not translate host",
            "timeout",
            "timed out",
            "unreachable",
            "name or service",
            "does not exist",
        )
    ):
        return Problem.UNREACHABLE
    return Problem.ERROR


def _without_password(dsn: str) -> str:
    try:
        from psycopg import conninfo

        parts = conninfo.conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - not a DSN psycopg parses: say nothing of it
        return "(unparsable DSN)"
    parts.pop("password", None)
    return conninfo.make_conninfo(**parts)  # type: ignore[arg-type]
