"""Everything the desktop app remembers between runs, as one typed model.

The settings dialog edits a copy and the app persists it (as JSON inside QSettings), so the rules
for valid values live here, next to the batch settings they wrap, not in widgets.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from facebatch_gui.core.apiconfig import ApiConfig
from facebatch_gui.core.settings import BatchSettings
from facebatch_gui.core.store.config import StoreConfig


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer app's keys must not break an older one

    batch: BatchSettings = Field(default_factory=BatchSettings)
    model_dir: str | None = Field(None, description="Folder of ONNX files; None = default pack")
    store: StoreConfig = Field(default_factory=StoreConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)

    @field_serializer("store")
    def _store_without_secrets(self, store: StoreConfig) -> dict[str, Any]:
        """Settings files never hold the Supabase key or a password inside the DSN."""
        return store.persisted()

    @classmethod
    def from_json(cls, text: str | None) -> tuple[AppSettings, str | None]:
        """Parse persisted settings; bad or missing JSON falls back to defaults with a reason."""
        if not text:
            return cls(), None
        try:
            return cls.model_validate_json(text), None
        except ValidationError as exc:
            return cls(), f"saved settings were unreadable and were reset: {exc.errors()[0]['msg']}"
