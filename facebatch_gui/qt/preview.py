"""The face preview pane: one user's photo with every detected face drawn, the aligned crop, the
quality figures and the row's outcome.

The figures come from the batch's own steps (`decode_for_analysis`, `analyse_image`,
`choose_face`), run off the GUI thread on the pane's own small pool, so that what the operator sees
is what a batch would do. A generation counter drops results of rows the operator has already left,
and a small LRU cache makes going back to a row instant.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import shiboken6
from PySide6.QtCore import (
    QEvent,
    QObject,
    QPointF,
    QRectF,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QImage,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from facebatch_gui.core.analysis import (
    FaceAnalysis,
    _alignment_source,
    analyse_image,
    choose_face,
    decode_for_analysis,
)
from facebatch_gui.core.cvcompat import import_cv2
from facebatch_gui.core.engine import DetectedFace, FaceEngine, blur_score
from facebatch_gui.core.errors import ErrorCode, ItemError
from facebatch_gui.core.fetcher import Fetcher
from facebatch_gui.core.imaging import DecodedImage
from facebatch_gui.core.records import ItemResult, Operation
from facebatch_gui.core.settings import BatchSettings, MultiFacePolicy
from facebatch_gui.core.store.base import FaceRecord, FaceStore

cv2 = import_cv2()
log = logging.getLogger(__name__)

CACHE_SIZE = 32  # rows
CACHE_BYTES = 64 * 1024 * 1024  # and at most this much image memory (a photo can be ~5 MB)
# Previews are interactive: a silent server gets a message (and a Reload) after this long, not after
# the batch's full read timeout and retries. It also bounds how long `shutdown` can wait.
PREVIEW_TIMEOUT_S = 5.0
THUMB_SIDE = 128  # logical pixels a thumbnail is shown at (the aligned crop is 112 px)

# Box colours on the photo: saturated, readable on skin, hair and backgrounds; outlined in black.
CHOSEN_COLOUR = QColor("#32d74b")  # the face a batch would enrol
REJECTED_COLOUR = QColor("#ff453a")  # the face a batch would pick, but it fails a quality check
OTHER_COLOUR = QColor("#ff9f0a")  # every other detection

ProblemKind = Literal["download", "image", "engine", "error"]


# -- what the worker computes ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FaceBox:
    """One detection, in the pixels of `PreviewData.photo` (the decoded image)."""

    bbox: tuple[float, float, float, float]
    kps: tuple[tuple[float, float], ...]
    score: float
    size_px: float  # shorter side in the source image's pixels
    chosen: bool
    counted: bool  # big enough to count as a second subject under the multi-face policy


@dataclass(frozen=True, slots=True)
class StoredFace:
    """An enrolled face from the store, with how much the previewed face looks like it."""

    user_id: str
    thumbnail: QImage | None
    similarity: float | None  # live embedding vs the stored one (None: not comparable)
    enrolled_at: str | None = None


@dataclass(slots=True)
class PreviewData:
    """Everything the pane shows for one row except the row's own ItemResult."""

    user_id: str
    url: str
    photo: QImage | None = None  # the decoded image the boxes refer to
    source_size: tuple[int, int] | None = None  # width, height of the file
    image_format: str | None = None
    faces: list[FaceBox] = field(default_factory=list)
    aligned: QImage | None = None  # the 112x112 crop the recogniser sees
    det_score: float | None = None
    face_size: float | None = None  # source pixels
    blur: float | None = None
    would_pass: bool | None = None  # None: not analysed (download failed, no models)
    error_code: ErrorCode | None = None  # why a batch would fail on this photo
    error_message: str | None = None
    problem: str | None = None  # why the preview is incomplete, in words for the operator
    problem_kind: ProblemKind | None = None
    enrolled: StoredFace | None = None  # this user's face in the store
    matched: StoredFace | None = None  # the face a duplicate_face row matched
    elapsed_s: float = 0.0

    @property
    def face_count(self) -> int:
        return len(self.faces)

    @property
    def chosen(self) -> FaceBox | None:
        return next((f for f in self.faces if f.chosen), None)

    @property
    def nbytes(self) -> int:
        """Image memory held, for the cache's budget."""
        images = [self.photo, self.aligned]
        images += [s.thumbnail for s in (self.enrolled, self.matched) if s is not None]
        return sum(int(i.sizeInBytes()) for i in images if i is not None)

    @property
    def cacheable(self) -> bool:
        """Downloads and model loading can succeed on the next try; analyses are deterministic."""
        return self.problem_kind is None or (
            self.problem_kind == "error" and self.photo is not None
        )


@dataclass(frozen=True, slots=True)
class _Request:
    user_id: str
    url: str
    engine: FaceEngine | None
    store: FaceStore | None
    settings: BatchSettings
    fetcher: Fetcher
    duplicate_of: str | None


def _qimage(bgr: np.ndarray) -> QImage:
    arr = np.ascontiguousarray(bgr)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_BGR888).copy()


def _jpeg_qimage(data: bytes | None) -> QImage | None:
    if not data:
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else _qimage(bgr)


def _face_box(face: DetectedFace, image: DecodedImage, min_size: int, chosen: bool) -> FaceBox:
    size = face.size / image.scale
    return FaceBox(
        bbox=(float(face.bbox[0]), float(face.bbox[1]), float(face.bbox[2]), float(face.bbox[3])),
        kps=tuple((float(x), float(y)) for x, y in face.kps),
        score=float(face.score),
        size_px=size,
        chosen=chosen,
        counted=size >= min_size,
    )


def _stored(
    store: FaceStore | None,
    user_id: str,
    analysis: FaceAnalysis | None,
    engine: FaceEngine | None,
) -> StoredFace | None:
    """The store's face of `user_id`; a store that cannot answer just shows no thumbnail."""
    if store is None:
        return None
    try:
        record: FaceRecord | None = store.get_face(user_id)
    except Exception:  # the preview must never fail because of the store
        log.exception("preview: cannot read the face of %s", user_id)
        return None
    if record is None:
        return None
    similarity = None
    if analysis is not None and engine is not None and record.pack.space == engine.identity.space:
        similarity = float(np.dot(record.embedding, analysis.embedding))
    return StoredFace(
        user_id=user_id,
        thumbnail=_jpeg_qimage(record.thumbnail_jpeg),
        similarity=similarity,
        enrolled_at=record.updated_at or record.created_at,
    )


def compute_preview(req: _Request, is_current: Callable[[], bool]) -> PreviewData | None:
    """Fetch, decode and analyse one row as a batch would; None when the row went stale."""
    started = time.monotonic()
    data = PreviewData(user_id=req.user_id, url=req.url)
    q = req.settings.quality
    if not is_current():
        return None
    try:
        raw = req.fetcher.fetch(req.url)
    except ItemError as exc:
        data.would_pass = False
        data.error_code, data.error_message = exc.code, exc.message
        data.problem, data.problem_kind = f"Could not download the photo: {exc.message}", "download"
        return data
    if not is_current():
        return None
    try:
        image = decode_for_analysis(raw, q)
    except ItemError as exc:
        data.would_pass = False
        data.error_code, data.error_message = exc.code, exc.message
        data.problem, data.problem_kind = f"Cannot show this photo: {exc.message}", "image"
        return data
    if not is_current():
        return None
    data.photo = _qimage(image.bgr)
    data.source_size = (image.width, image.height)
    data.image_format = image.format
    engine = req.engine
    if engine is None:
        data.problem = "The face models are still loading; the faces will show once they are ready."
        data.problem_kind = "engine"
        data.enrolled = _stored(req.store, req.user_id, None, None)
        if req.duplicate_of:
            data.matched = _stored(req.store, req.duplicate_of, None, None)
        return data

    analysis: FaceAnalysis | None = None
    try:
        analysis = analyse_image(engine, image, q)
    except ItemError as exc:
        data.would_pass = False
        data.error_code, data.error_message = exc.code, exc.message
    if analysis is not None:
        data.would_pass = True
        faces = analysis.faces
        chosen: DetectedFace | None = analysis.chosen
        aligned: np.ndarray | None = analysis.aligned
        data.blur = analysis.quality.blur
    else:
        # analyse_image keeps its detections to itself when it refuses a photo: detect again (the
        # detector is deterministic) so the operator sees every face and which one was judged.
        faces = [] if data.error_code == ErrorCode.NO_FACE_DETECTED else engine.detect(image.bgr)
        try:
            chosen = choose_face(faces, image, q) if faces else None
        except ItemError:
            chosen = None  # multiple_faces: none of them is picked
        aligned = None
        if chosen is not None:
            aligned = engine.align(*_alignment_source(image, chosen, q))
            data.blur = round(blur_score(aligned), 1)
    if chosen is not None:
        data.det_score = float(chosen.score)
        data.face_size = chosen.size / image.scale
    data.faces = [_face_box(f, image, q.min_face_size, f is chosen) for f in faces]
    data.aligned = None if aligned is None else _qimage(aligned)
    data.enrolled = _stored(req.store, req.user_id, analysis, engine)
    if req.duplicate_of:
        data.matched = _stored(req.store, req.duplicate_of, analysis, engine)
    data.elapsed_s = time.monotonic() - started
    return data


# -- the worker -----------------------------------------------------------------------------------
class _JobSignals(QObject):
    done = Signal(int, object)  # generation, PreviewData | None (None: the row went stale)


class _PreviewJob(QRunnable):
    """A FunctionWorker sibling that hands its return value back through `done`."""

    def __init__(self, generation: int, func: Callable[[], PreviewData | None]) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the pane keeps its jobs until the pool is idle
        self.generation = generation
        self._func = func
        self.signals = _JobSignals()

    def run(self) -> None:
        try:
            result = self._func()
        except Exception as exc:  # a bug or an odd image must show as a message, not kill a thread
            log.exception("preview failed")
            result = _failed(exc)
        self.signals.done.emit(self.generation, result)


def _failed(exc: BaseException) -> PreviewData:
    return PreviewData(
        user_id="",
        url="",
        problem=f"The preview failed: {type(exc).__name__}: {exc}",
        problem_kind="error",
    )


# -- colours --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Tones:
    ok: QColor
    bad: QColor
    muted: QColor

    @classmethod
    def of(cls, palette: QPalette) -> _Tones:
        """Status colours that keep their contrast on light and dark themes alike."""
        dark = palette.color(QPalette.ColorRole.Window).lightness() < 128
        return cls(
            ok=QColor("#5ad16a" if dark else "#1b7f2a"),
            bad=QColor("#ff6b62" if dark else "#c62828"),
            muted=palette.color(QPalette.ColorRole.PlaceholderText),
        )


def _coloured(label: QLabel, colour: QColor | None) -> None:
    label.setStyleSheet("" if colour is None else f"color: {colour.name()};")


# -- the drawing widgets --------------------------------------------------------------------------
class PhotoView(QWidget):
    """The photo scaled to fit (aspect kept, sharp on high-DPI screens) with the faces drawn on it
    in screen pixels, so that lines and labels keep their size whatever the photo's."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 140)
        self._image: QImage | None = None
        self._faces: list[FaceBox] = []
        self._placeholder = ""
        self._passing = True
        self._pixmap: QPixmap | None = None
        self._pixmap_key: tuple[int, int, float] | None = None
        self.show_faces = True

    def sizeHint(self) -> QSize:
        return QSize(420, 360)

    def set_photo(
        self,
        image: QImage | None,
        faces: list[FaceBox],
        placeholder: str = "",
        *,
        passing: bool = True,
    ) -> None:
        """`passing`: the chosen face passes every check (green), or fails one (red)."""
        if image is not self._image:
            self._pixmap, self._pixmap_key = None, None
        self._image, self._faces, self._placeholder = image, list(faces), placeholder
        self._passing = passing
        self.update()

    def set_show_faces(self, show: bool) -> None:
        self.show_faces = show
        self.update()

    def image_rect(self) -> QRectF:
        """Where the photo is drawn, in widget coordinates (empty when there is none)."""
        if self._image is None or self._image.isNull():
            return QRectF()
        area = QRectF(self.contentsRect()).adjusted(4, 4, -4, -4)
        w, h = self._image.width(), self._image.height()
        factor = min(area.width() / w, area.height() / h)
        size_w, size_h = w * factor, h * factor
        return QRectF(
            area.x() + (area.width() - size_w) / 2,
            area.y() + (area.height() - size_h) / 2,
            size_w,
            size_h,
        )

    def map_from_image(self, x: float, y: float) -> QPointF:
        """A point of the photo's pixels in widget coordinates."""
        rect = self.image_rect()
        assert self._image is not None
        factor = rect.width() / self._image.width()
        return QPointF(rect.x() + x * factor, rect.y() + y * factor)

    def _scaled(self, rect: QRectF) -> QPixmap:
        assert self._image is not None
        dpr = self.devicePixelRatioF()
        key = (round(rect.width() * dpr), round(rect.height() * dpr), dpr)
        if self._pixmap is None or self._pixmap_key != key:
            scaled = self._image.scaled(
                max(1, key[0]),
                max(1, key[1]),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            self._pixmap = QPixmap.fromImage(scaled)
            self._pixmap.setDevicePixelRatio(dpr)
            self._pixmap_key = key
        return self._pixmap

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.fillRect(self.rect(), pal.color(QPalette.ColorRole.AlternateBase))
        rect = self.image_rect()
        if rect.isEmpty():
            painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                QRectF(self.rect()).adjusted(12, 12, -12, -12),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._placeholder,
            )
            painter.end()
            return
        painter.drawPixmap(rect.topLeft(), self._scaled(rect))
        if self.show_faces:
            for index, face in enumerate(self._faces):
                self._draw_face(painter, index, face)
        painter.end()

    def _draw_face(self, painter: QPainter, index: int, face: FaceBox) -> None:
        colour = OTHER_COLOUR
        if face.chosen:
            colour = CHOSEN_COLOUR if self._passing else REJECTED_COLOUR
        top_left = self.map_from_image(face.bbox[0], face.bbox[1])
        bottom_right = self.map_from_image(face.bbox[2], face.bbox[3])
        box = QRectF(top_left, bottom_right)
        style = Qt.PenStyle.SolidLine if face.counted or face.chosen else Qt.PenStyle.DashLine
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 150), 4.5, style))
        painter.drawRect(box)
        painter.setPen(QPen(colour, 2.5, style))
        painter.drawRect(box)
        radius = max(2.0, min(4.0, box.width() / 40))
        painter.setPen(QPen(QColor(0, 0, 0, 170), 1.2))
        painter.setBrush(QBrush(colour))
        for x, y in face.kps:
            painter.drawEllipse(self.map_from_image(x, y), radius, radius)
        self._draw_label(painter, box, f"{index + 1}  {face.score:.2f}", colour)

    def _draw_label(self, painter: QPainter, box: QRectF, text: str, colour: QColor) -> None:
        font = QFont(self.font())
        font.setBold(True)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.9))
        painter.setFont(font)
        metrics = QFontMetricsF(font)
        tag = QRectF(0, 0, metrics.horizontalAdvance(text) + 8, metrics.height() + 2)
        above = box.top() - tag.height() - 1
        tag.moveTo(box.left() - 1.25, above if above >= 0 else box.top() + 1.25)
        if tag.right() > self.width():
            tag.moveRight(self.width())
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(colour))
        painter.drawRoundedRect(tag, 2, 2)
        painter.setPen(QColor("#111111"))
        painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)


class ThumbView(QWidget):
    """A face thumbnail with a caption under it; resampled for the screen's pixel ratio."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._picture = QLabel()
        self._picture.setFixedSize(THUMB_SIDE, THUMB_SIDE)
        self._picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._picture.setFrameShape(QLabel.Shape.StyledPanel)
        self.title = QLabel(title)
        self.title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        bold = self.title.font()
        bold.setBold(True)
        self.title.setFont(bold)
        self.caption = QLabel()
        self.caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.caption.setWordWrap(True)
        self.caption.setFixedWidth(THUMB_SIDE + 16)
        self.caption.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        layout.addWidget(self.title, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self._picture, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.caption, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)

    @property
    def image(self) -> QImage | None:
        return self._image

    def set_face(self, image: QImage | None, caption: str, empty_text: str = "no image") -> None:
        self._image = image
        self.caption.setText(caption)
        if image is None or image.isNull():
            self._picture.setPixmap(QPixmap())
            self._picture.setText(empty_text)
            return
        self._picture.setText("")
        self._render()

    def _render(self) -> None:
        if self._image is None or self._image.isNull():
            return
        dpr = self.devicePixelRatioF()
        side = round((THUMB_SIDE - 4) * dpr)
        pixmap = QPixmap.fromImage(
            self._image.scaled(
                side,
                side,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
        pixmap.setDevicePixelRatio(dpr)
        self._picture.setPixmap(pixmap)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.DevicePixelRatioChange:
            self._render()
        super().changeEvent(event)


class _ElidedLabel(QLabel):
    """One line that elides in the middle to fit (URLs), with the whole text as its tooltip."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def _elide(self) -> None:
        width = max(20, self.width())
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle, width))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()


# -- the pane -------------------------------------------------------------------------------------
class PreviewPane(QWidget):
    """The main window's right-hand pane: the selected user's photo, faces, figures and outcome.

    Call `set_context` whenever the engine, store or settings change, `show_row` on every selection
    change, `clear` when nothing is selected and `shutdown` before the window closes.
    """

    instances: ClassVar[weakref.WeakSet[PreviewPane]] = weakref.WeakSet()

    previewed = Signal(object)  # PreviewData, each time the pane shows a computed preview

    def __init__(self, parent: QWidget | None = None, *, max_threads: int = 2) -> None:
        super().__init__(parent)
        self._engine_fn: Callable[[], FaceEngine | None] = lambda: None
        self._store: FaceStore | None = None
        self._settings = BatchSettings()
        self._fetcher: Fetcher | None = None
        self._closing = threading.Event()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, min(2, max_threads)))
        self._jobs: list[_PreviewJob] = []
        self._generation = 0
        self._row: tuple[str, str, ItemResult | None] | None = None
        self._cache: OrderedDict[tuple[object, ...], PreviewData] = OrderedDict()
        self._pending_key: tuple[object, ...] | None = None  # the cache key of the job on show
        self._inflight_key: tuple[object, ...] | None = None  # ... while it is still running
        self.last_result: PreviewData | None = None
        self.stale_dropped = 0  # results that arrived for a row already left (tests, diagnostics)
        self._engine_poll = QTimer(self)
        self._engine_poll.setInterval(500)
        self._engine_poll.timeout.connect(self._poll_engine)
        self._build()
        self.clear()
        PreviewPane.instances.add(self)

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.setSpacing(8)

        header = QHBoxLayout()
        self.title = QLabel()
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label = QLabel()
        bold = self.status_label.font()
        bold.setBold(True)
        self.status_label.setFont(bold)
        header.addWidget(self.title, 1)
        header.addWidget(self.status_label, 0, Qt.AlignmentFlag.AlignRight)
        root.addLayout(header)
        self.url_label = _ElidedLabel()
        root.addWidget(self.url_label)

        self.message_label = QLabel()
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.message_label)

        self.photo_view = PhotoView()
        root.addWidget(self.photo_view, 1)

        legend = QHBoxLayout()
        self.legend_label = QLabel()
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.boxes_check = QCheckBox("Show faces")
        self.boxes_check.setChecked(True)
        self.boxes_check.toggled.connect(self.photo_view.set_show_faces)
        self.reload_button = QToolButton()
        self.reload_button.setText("Reload")
        self.reload_button.setToolTip("Download and analyse this photo again")
        self.reload_button.clicked.connect(self.refresh)
        legend.addWidget(self.legend_label, 1)
        legend.addWidget(self.boxes_check)
        legend.addWidget(self.reload_button)
        root.addLayout(legend)

        self.notice_label = QLabel()  # download failures, models loading, preview vs. outcome
        self.notice_label.setWordWrap(True)
        self.notice_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.notice_label)

        thumbs = QHBoxLayout()
        thumbs.setSpacing(12)
        self.aligned_view = ThumbView("Aligned face")
        self.matched_view = ThumbView("Matched face")
        self.enrolled_view = ThumbView("Enrolled face")
        for view in (self.aligned_view, self.matched_view, self.enrolled_view):
            thumbs.addWidget(view, 0, Qt.AlignmentFlag.AlignTop)
        thumbs.addStretch(1)
        root.addLayout(thumbs)

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(2)
        self.figures: dict[str, QLabel] = {}
        for key, label in (
            ("det_score", "Detection score"),
            ("face_size", "Face size"),
            ("blur", "Sharpness"),
            ("faces", "Faces found"),
            ("image", "Image"),
            ("similarity", "Similarity"),
        ):
            value = QLabel()
            value.setFont(mono)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.figures[key] = value
            form.addRow(label + ":", value)
        self._form = form
        root.addLayout(form)

    # -- public API -----------------------------------------------------------------------------
    def set_context(
        self,
        engine: Callable[[], FaceEngine | None],
        store: FaceStore | None,
        settings: BatchSettings,
    ) -> None:
        """New engine source, store or settings; the row on show is previewed again if they change
        what it would show. Calling it with the same things again costs nothing."""
        before = self._current_key()
        refetch = self._fetcher is not None and settings.fetch != self._settings.fetch
        if refetch and self._fetcher is not None:
            self._fetcher.close()  # a job still using it fails, and is dropped as stale below
            self._fetcher = None
            self._inflight_key = None
        self._engine_fn, self._store, self._settings = engine, store, settings
        if self._row is not None and (refetch or self._current_key() != before):
            self.show_row(*self._row)

    def show_row(self, user_id: str, avatar_image_url: str, result: ItemResult | None) -> None:
        """Show a row: its outcome at once, its photo and faces as soon as they are computed."""
        if self._closing.is_set():
            return
        engine = self._engine_fn()
        key = self._key(user_id, avatar_image_url, result, engine)
        self._row = (user_id, avatar_image_url, result)
        self.url_label.set_full_text(avatar_image_url)
        self.reload_button.setEnabled(True)
        self._show_header(user_id, result)
        if key == self._inflight_key:
            return  # the same row again (a window refreshing its selection): let the job finish
        self._generation += 1
        self._inflight_key = None
        self._engine_poll.stop()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self._show_data(cached)
            return
        self._show_loading()
        if not avatar_image_url.strip():
            self._show_data(
                PreviewData(
                    user_id=user_id,
                    url=avatar_image_url,
                    problem="This row has no avatar_image_url.",
                    problem_kind="error",
                )
            )
            return
        request = _Request(
            user_id=user_id,
            url=avatar_image_url,
            engine=engine,
            store=self._store,
            settings=self._settings,
            fetcher=self._ensure_fetcher(),
            duplicate_of=result.duplicate_of if result is not None else None,
        )
        generation = self._generation

        def is_current() -> bool:
            return generation == self._generation and not self._closing.is_set()

        job = _PreviewJob(generation, lambda: compute_preview(request, is_current))
        self._pending_key = self._inflight_key = key
        self._pool.clear()  # rows queued but not started are stale now: never start them
        job.signals.done.connect(self._on_done)  # a bound slot: disconnected if the pane dies
        self._prune_jobs()
        self._jobs.append(job)
        self._pool.start(job)

    def refresh(self) -> None:
        """Compute the row on show again (models finished loading, the photo was replaced)."""
        if self._row is None:
            return
        user_id, url, result = self._row
        self._cache.pop(self._key(user_id, url, result, self._engine_fn()), None)
        self._inflight_key = None
        self.show_row(user_id, url, result)

    def clear(self) -> None:
        self._generation += 1
        self._inflight_key = None
        self._engine_poll.stop()
        self._row = None
        self.last_result = None
        self.title.setText("No user selected")
        _coloured(self.title, _Tones.of(self.palette()).muted)
        self.status_label.setText("")
        self.url_label.set_full_text("")
        self.reload_button.setEnabled(False)
        self.message_label.hide()
        self.notice_label.hide()
        self.photo_view.set_photo(None, [], "Select a user in the table to preview their photo.")
        self.legend_label.setText("")
        self._show_figures(None)
        for view in (self.aligned_view, self.matched_view, self.enrolled_view):
            view.hide()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Cancel what is queued, stop downloads and wait for the pool; True when it is idle."""
        self._closing.set()
        self._generation += 1
        self._engine_poll.stop()
        self._pool.clear()
        if self._fetcher is not None:
            self._fetcher.close()
        done = self._pool.waitForDone(timeout_ms)
        if done:
            self._jobs.clear()
        return done

    def active_jobs(self) -> int:
        """Jobs running or queued; 0 once the pane is deleted (its pool waited for them)."""
        if not shiboken6.isValid(self._pool):
            return 0
        return self._pool.activeThreadCount()

    # -- plumbing -------------------------------------------------------------------------------
    def _key(
        self, user_id: str, url: str, result: ItemResult | None, engine: FaceEngine | None
    ) -> tuple[object, ...]:
        return (
            user_id,
            url,
            None if result is None else (result.status, result.duplicate_of),
            id(engine),
            id(self._store),
            self._settings.quality.model_dump_json(),
        )

    def _current_key(self) -> tuple[object, ...] | None:
        if self._row is None:
            return None
        return self._key(*self._row, self._engine_fn())

    def _ensure_fetcher(self) -> Fetcher:
        if self._fetcher is None:
            fetch = self._settings.fetch
            quick = fetch.model_copy(
                update={
                    "read_timeout_s": min(fetch.read_timeout_s, PREVIEW_TIMEOUT_S),
                    "connect_timeout_s": min(fetch.connect_timeout_s, PREVIEW_TIMEOUT_S),
                    "retries": min(fetch.retries, 1),
                }
            )
            self._fetcher = Fetcher(quick, max_connections=4, cancelled=self._closing.is_set)
        return self._fetcher

    def _prune_jobs(self) -> None:
        """Drop finished jobs; only when the pool is idle is none of them still inside run()."""
        if self._pool.activeThreadCount() == 0:
            self._jobs.clear()

    def _on_done(self, generation: int, data: PreviewData | None) -> None:
        if generation != self._generation or self._closing.is_set():
            self.stale_dropped += 1
            return
        self._inflight_key = None
        if data is None:
            return
        if not data.user_id and self._row is not None:  # a crash report: name the row
            data.user_id, data.url = self._row[0], self._row[1]
        if data.cacheable and self._pending_key is not None:
            self._cache[self._pending_key] = data
            while len(self._cache) > 1 and (
                len(self._cache) > CACHE_SIZE
                or sum(d.nbytes for d in self._cache.values()) > CACHE_BYTES
            ):
                self._cache.popitem(last=False)
        self._show_data(data)

    def _poll_engine(self) -> None:
        if self._engine_fn() is not None:
            self._engine_poll.stop()
            self.refresh()

    # -- rendering ------------------------------------------------------------------------------
    def _show_header(self, user_id: str, result: ItemResult | None) -> None:
        tones = _Tones.of(self.palette())
        self.title.setText(user_id or "(no user id)")
        _coloured(self.title, None)
        _coloured(self.url_label, tones.muted)
        if result is None:
            self.status_label.setText("● not processed yet")
            _coloured(self.status_label, tones.muted)
            self.message_label.hide()
        elif result.status:
            done = "deleted" if result.operation == Operation.DELETE else "enrolled"
            extra = " (replaced)" if result.replaced else ""
            self.status_label.setText(f"✔ {done}{extra}")
            _coloured(self.status_label, tones.ok)
            self.message_label.setVisible(bool(result.warnings))
            self.message_label.setText("\n".join(f"⚠ {w}" for w in result.warnings))
            _coloured(self.message_label, None)
        else:
            code = result.error_code.value if result.error_code else "failed"
            self.status_label.setText(f"✖ {code}")
            _coloured(self.status_label, tones.bad)
            self.message_label.setText(result.error_message or "The row failed (no message).")
            _coloured(self.message_label, tones.bad)
            self.message_label.show()

    def _show_loading(self) -> None:
        self.last_result = None
        self.photo_view.set_photo(None, [], "Loading the photo…")
        self.legend_label.setText("")
        self.notice_label.hide()
        self._show_figures(None)
        for view in (self.aligned_view, self.matched_view, self.enrolled_view):
            view.hide()

    def _show_data(self, data: PreviewData, *, announce: bool = True) -> None:
        tones = _Tones.of(self.palette())
        result = self._row[2] if self._row is not None else None
        placeholder = data.problem or "No photo."
        self.photo_view.set_photo(
            data.photo, data.faces, placeholder, passing=bool(data.would_pass)
        )
        self._show_legend(data)
        self._show_figures(data)
        self._show_notice(data, result, tones)
        self._show_thumbs(data, result)
        self.last_result = data
        if data.problem_kind == "engine":
            self._engine_poll.start()
        if announce:
            self.previewed.emit(data)

    def _show_legend(self, data: PreviewData) -> None:
        if not data.faces:
            self.legend_label.setText("")
            return

        def swatch(colour: QColor, text: str) -> str:
            return f"<span style='color:{colour.name()}'>■</span> {text}"

        parts = []
        chosen = data.chosen
        if chosen is not None:
            parts.append(
                swatch(CHOSEN_COLOUR, "chosen face")
                if data.would_pass
                else swatch(REJECTED_COLOUR, "picked face (fails a check)")
            )
        if chosen is None:
            parts.append(swatch(OTHER_COLOUR, "detected faces (none chosen)"))
        elif any(not f.chosen for f in data.faces):
            parts.append(swatch(OTHER_COLOUR, "other faces (ignored)"))
        if any(not f.counted and not f.chosen for f in data.faces):
            parts.append("dashed: too small to count")
        self.legend_label.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    def _show_figures(self, data: PreviewData | None) -> None:
        q = self._settings.quality
        tones = _Tones.of(self.palette())

        def put(key: str, text: str | None, failing: bool = False) -> None:
            label = self.figures[key]
            label.setText(text if text is not None else "–")
            _coloured(label, tones.bad if failing else None)

        if data is None:
            for key in self.figures:
                put(key, None)
            self._form.setRowVisible(self.figures["similarity"], False)
            return
        put(
            "det_score",
            None
            if data.det_score is None
            else f"{data.det_score:.2f}  (min {q.min_det_score:.2f})",
            data.det_score is not None and data.det_score < q.min_det_score,
        )
        put(
            "face_size",
            None if data.face_size is None else f"{data.face_size:.0f} px  (min {q.min_face_size})",
            data.face_size is not None and data.face_size < q.min_face_size,
        )
        put(
            "blur",
            None if data.blur is None else f"{data.blur:.1f}  (min {q.min_blur:.1f})",
            data.blur is not None and data.blur < q.min_blur,
        )
        if data.photo is None or data.problem_kind == "engine":
            put("faces", None)
        else:
            counted = sum(1 for f in data.faces if f.counted)
            text = str(data.face_count)
            if counted != data.face_count:
                text += f"  ({counted} large enough to count)"
            if data.face_count > 1:
                text += "".join(
                    f"\n#{i + 1}: {f.score:.2f}, {f.size_px:.0f} px"
                    for i, f in enumerate(data.faces)
                )
            put(
                "faces",
                text,
                (counted > 1 and q.multi_face == MultiFacePolicy.REJECT) or data.face_count == 0,
            )
        size = None
        if data.source_size is not None:
            size = f"{data.source_size[0]}×{data.source_size[1]} {data.image_format or ''}"
        put("image", size)
        similarity = None
        if data.matched is not None and data.matched.similarity is not None:
            similarity = (
                f"{data.matched.similarity:.3f} to {data.matched.user_id}  "
                f"(duplicate from {q.duplicate_threshold:.2f})"
            )
        elif data.enrolled is not None and data.enrolled.similarity is not None:
            similarity = f"{data.enrolled.similarity:.3f} to the enrolled face"
        put("similarity", similarity)
        self._form.setRowVisible(self.figures["similarity"], similarity is not None)

    def _show_notice(self, data: PreviewData, result: ItemResult | None, tones: _Tones) -> None:
        """The live analysis in words, labelled as a preview so it is not taken for the outcome."""
        if data.problem is not None:
            text = data.problem
            colour = tones.muted if data.problem_kind == "engine" else tones.bad
        elif data.would_pass:
            text = "Preview: the photo passes the face checks (detection, size, sharpness)."
            colour = tones.ok if result is None else tones.muted
        elif data.error_code is None:
            text, colour = "", tones.muted
        elif result is not None and result.error_code == data.error_code:
            text = (
                f"Preview with the current settings: would fail with {data.error_code.value} too."
            )
            colour = tones.muted
        else:
            text = f"Preview: would fail with {data.error_code.value}: {data.error_message}"
            colour = tones.bad if result is None else tones.muted
        self.notice_label.setText(text)
        _coloured(self.notice_label, colour)
        self.notice_label.setVisible(bool(text))

    def _show_thumbs(self, data: PreviewData, result: ItemResult | None) -> None:
        if data.aligned is not None:
            self.aligned_view.set_face(data.aligned, "112×112, as the recogniser sees it")
            self.aligned_view.show()
        else:
            self.aligned_view.hide()
        dup = result.duplicate_of if result is not None else None
        if dup:
            matched = data.matched
            sim = result.similarity if result is not None else None
            parts = [dup]
            if sim is not None:
                parts.append(f"similarity {sim:.2f}")
            self.matched_view.title.setText("Matched face")
            self.matched_view.set_face(
                matched.thumbnail if matched else None,
                "\n".join(parts),
                "not in the store" if matched is None else "no thumbnail",
            )
            self.matched_view.show()
        else:
            self.matched_view.hide()
        enrolled = data.enrolled
        if enrolled is not None:
            when = (enrolled.enrolled_at or "")[:16].replace("T", " ")
            caption = f"{enrolled.user_id}\n{when} UTC" if when else enrolled.user_id
            self.enrolled_view.set_face(enrolled.thumbnail, caption, "no thumbnail")
            self.enrolled_view.show()
        else:
            self.enrolled_view.hide()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and self._row is not None:
            self._show_header(self._row[0], self._row[2])
            if self.last_result is not None:
                self._show_data(self.last_result, announce=False)
        super().changeEvent(event)
