"""A small live plot of per-epoch training curves, painted with QPainter.

Training needs two curves that update a few times a minute; a plotting library (matplotlib,
pyqtgraph) would be a new dependency for that, so this widget paints them itself: losses on a left
axis fitted to their range, a 0-1 metric (validation IoU) on a right axis, one dot per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget


@dataclass(frozen=True)
class Curve:
    """One plotted column of the run's history records."""

    key: str
    label: str
    color: str
    axis: Literal["left", "right"]
    """``left``: fitted to the values (losses); ``right``: fixed 0-1 (IoU, Dice, accuracy)."""
    dashed: bool = False


CURVES = (
    Curve("train_loss", "train loss", "#f5a623", "left"),
    Curve("val_loss", "val loss", "#f5a623", "left", dashed=True),
    Curve("mean_fg_iou", "val fg IoU", "#4fc3f7", "right"),
)


class EpochPlot(QWidget):
    """Curves of per-epoch records (``{"epoch": 3, "train_loss": 0.4, ...}``) against epoch."""

    def __init__(self, parent: QWidget | None = None, curves: Sequence[Curve] = CURVES) -> None:
        super().__init__(parent)
        self._curves = tuple(curves)
        self._points: dict[str, list[tuple[int, float]]] = {c.key: [] for c in self._curves}
        self._epochs = 0
        self._fg = QColor("#f0f1f2")
        self._bg = QColor("#262930")
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(300, 190)

    # -- data ---------------------------------------------------------------------------------
    def set_colors(self, foreground: str, background: str) -> None:
        """Follow the viewer's theme (text and panel colours)."""
        self._fg, self._bg = QColor(foreground), QColor(background)
        self.update()

    def set_epochs(self, n: int) -> None:
        """Fix the x range to the run's epochs, so curves grow left to right instead of rescaling."""
        self._epochs = max(0, int(n))
        self.update()

    def set_history(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Replace the curves with these records (the whole history: a resumed run shows its past)."""
        for c in self._curves:
            self._points[c.key] = [
                (int(r["epoch"]), float(r[c.key]))
                for r in records
                if r.get(c.key) is not None and math.isfinite(float(r[c.key]))
            ]
        self.update()

    def clear(self) -> None:
        self.set_history([])

    def points(self, key: str) -> list[tuple[int, float]]:
        """The plotted ``(epoch, value)`` pairs of one curve."""
        return list(self._points[key])

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002 - Qt's signature
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.Antialiasing)
            p.fillRect(self.rect(), self._bg)
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        fm = p.fontMetrics()
        line_h = fm.height()
        faint = QColor(self._fg)
        faint.setAlpha(60)
        dim = QColor(self._fg)
        dim.setAlpha(150)
        legend_h = self._paint_legend(p, line_h)

        left_ticks = _ticks([v for c in self._curves if c.axis == "left" for _, v in self._points[c.key]])
        left_labels = [_fmt(v) for v in left_ticks]
        right_ticks = [0.0, 0.5, 1.0]
        right_labels = ["0", "0.5", "1"]
        ml = max(fm.horizontalAdvance(s) for s in left_labels) + 10
        mr = max(fm.horizontalAdvance(s) for s in right_labels) + 10
        plot = QRectF(ml, legend_h + 8, self.width() - ml - mr, self.height() - legend_h - 8 - 2 * line_h - 6)
        if plot.width() < 20 or plot.height() < 20:
            return

        last = max((e for pts in self._points.values() for e, _ in pts), default=0)
        x_max = max(self._epochs, last, 2)

        def x_at(epoch: float) -> float:
            return plot.left() + (epoch - 1) / (x_max - 1) * plot.width()

        def y_at(value: float, lo: float, hi: float) -> float:
            return plot.bottom() - min(max((value - lo) / (hi - lo), -0.05), 1.05) * plot.height()

        left = (left_ticks[0], left_ticks[-1])

        # grid, axes and tick labels
        p.setPen(QPen(faint, 1))
        for v in left_ticks:
            y = y_at(v, *left)
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        p.drawLine(plot.bottomLeft(), plot.topLeft())
        p.drawLine(plot.bottomRight(), plot.topRight())
        axis_color = {c.axis: QColor(c.color) for c in reversed(self._curves)}
        p.setPen(axis_color.get("left", dim))
        for v, s in zip(left_ticks, left_labels):
            r = QRectF(0, y_at(v, *left) - line_h / 2, ml - 5, line_h)
            p.drawText(r, Qt.AlignRight | Qt.AlignVCenter, s)
        p.setPen(axis_color.get("right", dim))
        for v, s in zip(right_ticks, right_labels):
            r = QRectF(plot.right() + 5, y_at(v, 0.0, 1.0) - line_h / 2, mr - 5, line_h)
            p.drawText(r, Qt.AlignLeft | Qt.AlignVCenter, s)
        p.setPen(dim)
        step = _epoch_step(x_max)
        for e in [1, *range(step, x_max + 1, step)]:
            if e != 1 and x_at(e) - x_at(1) < fm.horizontalAdvance("00"):
                continue
            r = QRectF(x_at(e) - 30, plot.bottom() + 3, 60, line_h)
            p.drawText(r, Qt.AlignHCenter | Qt.AlignTop, str(e))
        p.drawText(
            QRectF(plot.left(), plot.bottom() + 3 + line_h, plot.width(), line_h), Qt.AlignHCenter, "epoch"
        )

        if not any(self._points.values()):
            p.setPen(dim)
            p.drawText(plot, Qt.AlignCenter | Qt.TextWordWrap, "loss and IoU appear\nafter each epoch")
            return
        p.setClipRect(plot.adjusted(-4, -4, 4, 4))
        for c in self._curves:
            pts = self._points[c.key]
            if not pts:
                continue
            lo, hi = left if c.axis == "left" else (0.0, 1.0)
            xy = [QPointF(x_at(e), y_at(v, lo, hi)) for e, v in pts]
            pen = QPen(QColor(c.color), 2)
            if c.dashed:
                pen.setStyle(Qt.DashLine)
            p.setPen(pen)
            path = QPainterPath(xy[0])
            for q in xy[1:]:
                path.lineTo(q)
            p.drawPath(path)
            p.setPen(Qt.NoPen)
            p.setBrush(QColor(c.color))
            for q in xy:
                p.drawEllipse(q, 3.0, 3.0)
            p.setBrush(Qt.NoBrush)
        p.setClipping(False)

    def _paint_legend(self, p: QPainter, line_h: int) -> int:
        """One row: a line sample and the name of each curve, with its latest value."""
        fm = p.fontMetrics()
        x, y = 8.0, 4.0
        for c in self._curves:
            pts = self._points[c.key]
            text = c.label + (f" {_fmt(pts[-1][1])}" if pts else "")
            w = 18 + 4 + fm.horizontalAdvance(text) + 12
            if x + w > self.width() and x > 8:
                x, y = 8.0, y + line_h + 2
            pen = QPen(QColor(c.color), 2)
            if c.dashed:
                pen.setStyle(Qt.DashLine)
            p.setPen(pen)
            p.drawLine(QPointF(x, y + line_h / 2), QPointF(x + 18, y + line_h / 2))
            p.setPen(self._fg)
            p.drawText(QRectF(x + 22, y, w, line_h), Qt.AlignLeft | Qt.AlignVCenter, text)
            x += w
        return int(y + line_h)


def _ticks(values: list[float]) -> list[float]:
    """Three or four round ticks spanning ``values`` (a loss falling from 2.8 to 2.0: 2, 2.5, 3)."""
    if not values:
        return [0.0, 0.5, 1.0]
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        top = _nice_ceiling(hi) if hi > 0 else 1.0
        return [0.0, top / 2, top]
    step = _nice_ceiling((hi - lo) / 3)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 12) for i in range(first, last + 1)]


def _nice_ceiling(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``v`` (axis tops people can read)."""
    if not v > 0 or not math.isfinite(v):
        return 1.0
    base = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * base * (1 + 1e-9):
            return m * base
    return 10 * base


def _epoch_step(n: int) -> int:
    """Tick spacing so an axis of ``n`` epochs gets at most about six labels."""
    for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if n / s <= 6:
            return s
    return max(1, n // 6)


def _fmt(v: float) -> str:
    return f"{v:.3g}"
