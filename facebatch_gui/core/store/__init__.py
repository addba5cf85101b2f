"""Face stores: the embedded SQLite default and, later, Postgres and Supabase."""

from facebatch_gui.core.store.base import FaceRecord, FaceStore, GallerySnapshot
from facebatch_gui.core.store.sqlite import SqliteStore, default_db_path

__all__ = ["FaceRecord", "FaceStore", "GallerySnapshot", "SqliteStore", "default_db_path"]
