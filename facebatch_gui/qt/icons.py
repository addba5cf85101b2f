"""Icons from `resources/icons` (SVG, so they stay sharp at any device pixel ratio)."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QSize
from PySide6.QtGui import QIcon

from facebatch_gui.core.paths import resource
from facebatch_gui.qt.userlist_model import RowState


@cache
def action_icon(name: str) -> QIcon:
    path = resource("icons", "actions", f"{name}.svg")
    return QIcon(str(path)) if path.is_file() else QIcon()


@cache
def app_icon() -> QIcon:
    icon = QIcon()
    for name in ("facebatch.svg", "facebatch-256.png", "facebatch.png"):
        path = resource("icons", name)
        if path.is_file():
            icon.addFile(str(path))
    return icon


def state_icons(size: int = 18) -> dict[RowState, QIcon]:
    """Rendered once here, at start-up: the first paint of an SVG icon loads Qt's SVG plugin and
    parses the file, which would otherwise land in the first batch tick that shows that state."""
    out: dict[RowState, QIcon] = {}
    for state in RowState:
        path = resource("icons", "states", f"{state.value}.svg")
        if path.is_file():
            icon = QIcon(str(path))
            icon.pixmap(QSize(size, size))
            out[state] = icon
    return out
