"""Render resources/icons/facebatch.svg to PNGs (16..256 px) and a multi-size .ico.

Run from the repository root: python scripts/make_icons.py. Uses Qt's SVG renderer (QtSvg, part of
PySide6-Essentials) for the PNGs and Pillow for the .ico. The outputs are committed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ICONS / "facebatch.svg"))
    if not renderer.isValid():
        print("facebatch.svg is not a valid SVG", file=sys.stderr)
        return 1
    for size in SIZES:
        out = ICONS / f"facebatch-{size}.png"
        if not render(renderer, size).save(str(out)):
            print(f"cannot write {out}", file=sys.stderr)
            return 1
    images = [Image.open(ICONS / f"facebatch-{s}.png").convert("RGBA") for s in SIZES]
    images[-1].save(
        ICONS / "facebatch.ico", sizes=[(s, s) for s in SIZES], append_images=images[:-1]
    )
    del app
    print(f"wrote {len(SIZES)} PNGs and facebatch.ico to {ICONS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
