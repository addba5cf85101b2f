"""One delegate paints every cell of the user table straight from the row objects.

Qt's own delegate asks the model for about nine roles per cell; in PySide each is a call from C++
into Python that must take the GIL, and while a batch runs the pipeline threads hold it: a repaint
of a screenful of rows then costs a thousand GIL hand-offs. This delegate is entered once per cell
and reads the row in Python, which keeps repaints short while a batch runs. Editing still goes
through the model's EditRole.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, QSortFilterProxyModel
from PySide6.QtGui import QImage, QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from facebatch_gui.qt.userlist_model import STATE_COLOURS, Column, UserListModel


class UserRowDelegate(QStyledItemDelegate):
    def __init__(
        self, proxy: QSortFilterProxyModel, model: UserListModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._proxy = proxy
        self._model = model
        self.icon_size = QSize(18, 18)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        source = self._proxy.mapToSource(index).row()
        rows = self._model.rows
        if not 0 <= source < len(rows):
            return
        row = rows[source]
        col = index.column()
        opt = QStyleOptionViewItem(option)
        text = self._model.cell_text(row, col)
        if text:
            opt.text = text
            opt.features |= QStyleOptionViewItem.ViewItemFeature.HasDisplay
        if col == Column.STATUS:
            icon = self._model.state_icon(row.state)
            if icon is not None:
                opt.icon = icon
                opt.decorationSize = self.icon_size
                opt.features |= QStyleOptionViewItem.ViewItemFeature.HasDecoration
        if col in (Column.STATUS, Column.ERROR):
            colour = STATE_COLOURS.get(row.state)
            if colour is not None:
                opt.palette.setColor(QPalette.ColorRole.Text, colour)
        widget = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        if col == Column.FACE and isinstance(row.thumbnail, QImage) and not row.thumbnail.isNull():
            side = max(8, option.rect.height() - 4)
            target = QRect(0, 0, side, side)
            target.moveCenter(option.rect.center())
            painter.save()
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, row.thumbnail)
            painter.restore()
