"""Icons from `resources/icons` (SVG, so they stay sharp at any device pixel ratio)."""

from __future__ import annotations

from functools import cache

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


def state_icons() -> dict[RowState, QIcon]:
    out: dict[RowState, QIcon] = {}
    for state in RowState:
        path = resource("icons", "states", f"{state.value}.svg")
        if path.is_file():
            out[state] = QIcon(str(path))
    return out
