"""Layout pieces that keep the docks usable on a 1280×800 screen (issue 13).

Why: with both docks open the window needed about 2000 px of height, the card text was overlapped,
the results box, the "cut at" line and the table columns were cut off. Here: a vertical scroll area
around a dock's content (the dock scrolls, the window keeps its size), a read-only result text whose
height follows its content (no box inside a box to scroll), a picture that scales to its width, and
tables whose columns fit their contents once and can then be resized by the user.
"""

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QPixmap, QTextOption
from qtpy.QtWidgets import (
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)


class DockScroll(QScrollArea):
    """A vertical scroll area as wide as its content needs and of moderate preferred height.

    Its minimum width follows the content's (napari's stylesheet, applied when shown, makes widgets
    larger than at construction), so the dock never cuts the content off on the right; its preferred
    height is capped so that two docks stacked in one area share it instead of one taking it all.
    """

    PREFERRED_HEIGHT = 360

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        widget = self.widget()
        if widget is not None:
            bar = self.verticalScrollBar().sizeHint().width()
            hint.setWidth(widget.minimumSizeHint().width() + bar + 2 * self.frameWidth())
        return hint

    def sizeHint(self):
        hint = super().sizeHint()
        widget = self.widget()
        if widget is not None:
            hint.setWidth(max(hint.width(), self.minimumSizeHint().width()))
            hint.setHeight(min(widget.sizeHint().height(), self.PREFERRED_HEIGHT))
        return hint

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not getattr(self, "_shared", False):  # the first time only: later the split is the user's
            self._shared = True
            QTimer.singleShot(0, self._share)

    def _share(self) -> None:
        try:
            share_dock_area(self)
        except RuntimeError:  # the dock went in the meantime (viewer closed right after docking)
            pass

    def eventFilter(self, watched, event) -> bool:
        handled = super().eventFilter(watched, event)
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's needs changed: the dock asks again
        return handled


def scrolled_layout(owner: QWidget) -> QVBoxLayout:
    """A layout to fill, inside a vertical scroll area that fills ``owner`` (``owner.scroll``)."""
    inner = QWidget()
    inner.setObjectName("bavis_dock_content")
    layout = QVBoxLayout(inner)
    scroll = DockScroll(owner)
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(inner)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    owner.scroll = scroll
    return layout


class ResultText(QTextEdit):
    """Read-only, selectable plain text whose height follows its content (at least ``min_lines``)."""

    def __init__(self, placeholder: str, tooltip: str, min_lines: int = 3):
        super().__init__()
        self.setReadOnly(True)
        self.setAcceptRichText(False)
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)  # long paths too
        self.setPlaceholderText(placeholder)
        self.setToolTip(tooltip)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._min_lines = min_lines
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def _fit(self, *_) -> None:
        line = self.fontMetrics().lineSpacing()
        content = max(self.document().size().height(), self._min_lines * line + 2 * self.document().documentMargin())
        frame = 2 * self.frameWidth()
        self.setFixedHeight(int(content) + frame + 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit()


class ScaledPicture(QLabel):
    """A picture shown at the label's width (never wider than drawn), keeping its aspect ratio."""

    def __init__(self):
        super().__init__()
        self._original = QPixmap()
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

    def set_picture(self, pixmap: QPixmap) -> None:
        self._original = pixmap
        self._rescale()
        self.updateGeometry()

    def clear(self) -> None:
        self._original = QPixmap()
        super().clear()
        self.updateGeometry()

    def hasHeightForWidth(self) -> bool:
        return not self._original.isNull()

    def heightForWidth(self, width: int) -> int:
        if self._original.isNull():
            return 0
        width = min(width, self._original.width())
        return int(round(self._original.height() * width / max(1, self._original.width())))

    def sizeHint(self):
        hint = super().sizeHint()
        if not self._original.isNull():
            hint.setWidth(min(self._original.width(), 360))
            hint.setHeight(self.heightForWidth(hint.width()))
        return hint

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setWidth(0 if self._original.isNull() else 120)
        return hint

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._original.isNull():
            return
        width = min(self.width(), self._original.width())
        if width > 0:
            self.setPixmap(self._original.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation))


def interactive_columns(table: QTableWidget) -> None:
    """Columns the user can drag; fitted to their contents whenever new rows arrive."""
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    timer = QTimer(table)
    timer.setSingleShot(True)
    timer.setInterval(0)
    timer.timeout.connect(table.resizeColumnsToContents)
    model = table.model()
    for signal in (model.rowsInserted, model.modelReset, model.dataChanged):
        signal.connect(lambda *_: timer.start())


def share_dock_area(widget: QWidget) -> None:
    """Split the dock area evenly among this plugin's docks in it (called once, when first shown).

    napari gives a newly docked widget most of its area ("push lower widgets up"), which on an 800 px
    screen leaves the other dock about 100 px: both docks get half instead (each scrolls).
    """
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    main = dock.parentWidget() if dock is not None else None
    if not isinstance(main, QMainWindow) or dock.isFloating():
        return
    area = main.dockWidgetArea(dock)
    ours = [d for d in main.findChildren(QDockWidget)
            if d.isVisible() and not d.isFloating() and main.dockWidgetArea(d) == area
            and d.findChild(DockScroll) is not None and not main.tabifiedDockWidgets(d)]
    if len(ours) > 1:
        main.resizeDocks(ours, [10000] * len(ours), Qt.Orientation.Vertical)
