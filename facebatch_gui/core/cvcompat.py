"""Keep OpenCV's bundled-Qt environment variables away from PySide6.

`opencv-python` (a dependency of insightface) sets `QT_QPA_PLATFORM_PLUGIN_PATH` and
`QT_QPA_FONTDIR` to its own Qt 5 folders when `cv2` is imported. PySide6 would then look for its
Qt 6 platform plugins
there and abort. Every place that imports cv2 or insightface calls `scrub_cv2_qt_env()` right after,
and the Qt layer calls it again before creating an application.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

_QT_VARS = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")


def _cv2_dir() -> Path | None:
    spec = importlib.util.find_spec("cv2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent


def scrub_cv2_qt_env() -> list[str]:
    """Remove Qt variables that point into cv2's package; return the names removed."""
    cv2_dir = _cv2_dir()
    removed = []
    for name in _QT_VARS:
        value = os.environ.get(name)
        if not value or cv2_dir is None:
            continue
        try:
            inside = Path(value).resolve().is_relative_to(cv2_dir)
        except OSError:
            inside = False
        if inside:
            del os.environ[name]
            removed.append(name)
    return removed


def import_cv2() -> ModuleType:
    import cv2

    scrub_cv2_qt_env()
    return cv2
