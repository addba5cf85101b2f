"""Cell painting that item flags cannot express: face thumbnails larger than status icons."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem


class ThumbnailDelegate(QStyledItemDelegate):
    """Draws the row's face image filling the cell height, centred, smoothly scaled."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        image = index.data(Qt.ItemDataRole.DecorationRole)
        opt.icon = opt.icon.__class__()  # the base draws background/selection only
        opt.features &= ~QStyleOptionViewItem.ViewItemFeature.HasDecoration
        style = opt.widget.style() if opt.widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        if isinstance(image, QImage) and not image.isNull():
            side = max(8, option.rect.height() - 4)
            target = QRect(0, 0, side, side)
            target.moveCenter(option.rect.center())
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, image)
            painter.restore()
