"""A small live plot of per-epoch training curves: a matplotlib canvas inside the training dock.

Losses go on a left axis fitted to their range, a 0-1 metric (validation IoU) on a right axis, one
dot per epoch, in the viewer's theme colours. matplotlib (a core dependency, for the evaluation
plots) does the axes, ticks and legend; this module is imported only by the training dock.

The run sends its history from a worker thread once per epoch, and the UI thread must keep ticking
while it trains, so the figure, both axes, the lines and the legend are built once and an update
only replaces line data, limits and legend text, then asks for one deferred draw (none when the
data did not change). Margins are fixed in pixels (refitted on resize), never laid out per draw:
clearing the axes and constrained layout cost ~0.3 s a redraw. Measured under Xvfb on the shared
2-core dev machine (matplotlib 3.11, PyQt6, 300x190 px): importing matplotlib's Qt backend and this
module 0.6-0.9 s (when the dock module is first imported); first build plus draw 0.06-0.11 s; one
``set_history`` with a new epoch plus its draw 35-60 ms median (set_history alone under 2 ms, an
unchanged history 0.03 ms); longest UI pause while the end-to-end widget test trains 0.14 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.backend_bases import ResizeEvent
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator
from qtpy.QtCore import QSize
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
_FONT = 8  # points: the dock is narrow
_MARGINS = {"left": 42, "right": 30, "top": 38, "bottom": 32}
"""Pixels around the axes: tick labels (at most ``0.0125``-wide), two legend rows, "epoch"."""


class EpochPlot(FigureCanvasQTAgg):
    """Curves of per-epoch records (``{"epoch": 3, "train_loss": 0.4, ...}``) against epoch."""

    def __init__(self, parent: QWidget | None = None, curves: Sequence[Curve] = CURVES) -> None:
        super().__init__(Figure(figsize=(3, 1.9), dpi=100))
        self.setParent(parent)
        self._curves = tuple(curves)
        self._points: dict[str, list[tuple[int, float]]] = {c.key: [] for c in self._curves}
        self._epochs = 0
        self._fg, self._bg = "#f0f1f2", "#262930"  # napari's dark theme until the dock says otherwise
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self._build()
        self.mpl_connect("resize_event", self._fit_margins)

    def sizeHint(self) -> QSize:
        return QSize(300, 190)

    # -- data ---------------------------------------------------------------------------------
    def set_colors(self, foreground: str, background: str) -> None:
        """Follow the viewer's theme (text and panel colours)."""
        if (foreground, background) == (self._fg, self._bg):
            return
        self._fg, self._bg = foreground, background
        self._apply_colors()
        self.draw_idle()

    def set_epochs(self, n: int) -> None:
        """Fix the x range to the run's epochs, so curves grow left to right instead of rescaling."""
        n = max(0, int(n))
        if n != self._epochs:
            self._epochs = n
            self._update()

    def set_history(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Replace the curves with these records (the whole history: a resumed run shows its past)."""
        points = {
            c.key: [
                (int(r["epoch"]), float(r[c.key]))
                for r in records
                if r.get(c.key) is not None and math.isfinite(float(r[c.key]))
            ]
            for c in self._curves
        }
        if points != self._points:
            self._points = points
            self._update()

    def clear(self) -> None:
        self.set_history([])

    def points(self, key: str) -> list[tuple[int, float]]:
        """The plotted ``(epoch, value)`` pairs of one curve."""
        return list(self._points[key])

    # -- drawing --------------------------------------------------------------------------------
    def _build(self) -> None:
        """Everything that does not depend on the data, once: updates only touch what they change."""
        fig = self.figure
        self._left = left = fig.add_subplot()
        self._right = right = left.twinx()
        left.set_zorder(right.get_zorder() + 1)  # losses over IoU; matplotlib shows the lower patch only
        left.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=2))
        left.yaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
        left.set_xlabel("epoch", fontsize=_FONT, labelpad=1)
        left.set_ymargin(0.08)
        right.set_ylim(-0.03, 1.03)
        right.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
        for ax in (left, right):
            ax.tick_params(labelsize=_FONT, length=3, pad=2)
        left.grid(True, axis="y", linewidth=0.8)
        self.lines: dict[str, Line2D] = {}
        """One line per curve, by key: its data are what :meth:`points` returns."""
        for c in self._curves:
            ax = left if c.axis == "left" else right
            (self.lines[c.key],) = ax.plot([], [], color=c.color, linewidth=1.6, marker="o", markersize=3.5,
                                           linestyle="--" if c.dashed else "-", clip_on=False)  # fmt: skip
        self._empty = left.text(0.5, 0.5, "loss and IoU appear\nafter each epoch", transform=left.transAxes,
                                ha="center", va="center", alpha=0.6, fontsize=_FONT + 1)  # fmt: skip
        self._legend = fig.legend(handles=list(self.lines.values()), labels=[c.label for c in self._curves],
                                  loc="upper left", bbox_to_anchor=(0, 1), ncols=2, frameon=False,
                                  fontsize=_FONT, handlelength=1.6, handletextpad=0.4, columnspacing=1.0,
                                  borderaxespad=0.3, labelspacing=0.2)  # fmt: skip
        self._fit_margins()
        self._apply_colors()
        self._update()

    def _apply_colors(self) -> None:
        fg, bg = self._fg, self._bg
        self.figure.set_facecolor(bg)
        axis_color = {c.axis: c.color for c in reversed(self._curves)}
        for ax, side in ((self._left, "left"), (self._right, "right")):
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, grid_color=fg, grid_alpha=0.15)
            ax.tick_params(axis="y", labelcolor=axis_color.get(side, fg))
            for spine in ax.spines.values():
                spine.set_color(fg)
                spine.set_alpha(0.4)
        self._left.xaxis.label.set_color(fg)
        self._empty.set_color(fg)
        for text in self._legend.get_texts():
            text.set_color(fg)

    def _update(self) -> None:
        """Put the points into the lines, fit the limits, refresh the legend, draw once when idle."""
        for c, text in zip(self._curves, self._legend.get_texts()):
            pts = self._points[c.key]
            self.lines[c.key].set_data([e for e, _ in pts], [v for _, v in pts])
            text.set_text(c.label + (f" {pts[-1][1]:.3g}" if pts else ""))
        last = max((e for pts in self._points.values() for e, _ in pts), default=0)
        self._left.set_xlim(1, max(self._epochs, last, 2))
        has_left = any(self._points[c.key] for c in self._curves if c.axis == "left")
        if has_left:
            self._left.relim()
            self._left.autoscale_view(scalex=False)
        else:
            self._left.set_ylim(0, 1, auto=None)  # keep autoscaling on for the first losses
        self._empty.set_visible(not any(self._points.values()))
        self.draw_idle()

    def _fit_margins(self, event: ResizeEvent | None = None) -> None:  # noqa: ARG002 - mpl callback
        """Keep the margins a fixed number of pixels whatever the widget's size (fonts do not scale)."""
        w, h = max(self.width(), 1), max(self.height(), 1)
        m = _MARGINS
        self.figure.subplots_adjust(
            left=min(m["left"] / w, 0.4),
            right=max(1 - m["right"] / w, 0.6),
            bottom=min(m["bottom"] / h, 0.4),
            top=max(1 - m["top"] / h, 0.6),
        )
