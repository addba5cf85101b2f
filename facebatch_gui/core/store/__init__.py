"""Face stores: the embedded SQLite default, PostgreSQL and Supabase; `StoreConfig` picks one."""

from facebatch_gui.core.store.base import FaceRecord, FaceStore, GallerySnapshot
from facebatch_gui.core.store.config import (
    ConnectionReport,
    Problem,
    StoreConfig,
    StoreKind,
    check_connection,
    open_store,
)
from facebatch_gui.core.store.sqlite import SqliteStore, default_db_path

__all__ = [
    "ConnectionReport",
    "FaceRecord",
    "FaceStore",
    "GallerySnapshot",
    "Problem",
    "SqliteStore",
    "StoreConfig",
    "StoreKind",
    "check_connection",
    "default_db_path",
    "open_store",
]
