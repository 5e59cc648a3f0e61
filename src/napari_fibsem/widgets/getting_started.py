"""Where to begin: the order of the work, what each step needs, and a button that opens each dock.

Two workflows, shown apart because they share nothing but the tools: FIB-SEM segmentation and
supervised runs (label -> train -> evaluate -> supervise), and event detection in live-cell movies
(extract -> index -> set -> train -> detect). Docks open the way the Plugins menu opens them, so
there is one way in, whichever entry a person uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_fibsem._layer_meta import opened_folder
from napari_fibsem.widgets._common import VerticalScroll

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-fibsem"

# (step, dock display names, what it needs / gives)
SEGMENTATION_STEPS: list[tuple[str, tuple[str, ...], str]] = [
    ("1. Label", ("Label segmentation", "Label keypoints"),
     "Needs a folder of TIFF images: drag it into napari. Masks are saved to its labels/ folder, "
     "feature points to keypoints.csv. SAM and model proposals make it faster."),
    ("2. Train", ("Train segmentation model",),
     "Needs a labelled folder (images + labels/). Gives a model bundle (best.pt); "
     "'use this model for proposals' sends it back to labelling."),
    ("3. Evaluate", ("Evaluate models",),
     "Needs one or more models and a keypoints CSV (from Label keypoints). Gives accuracy per "
     "feature, plots and a report."),
    ("4. Supervise", ("Run (supervised)", "Microscope control"),
     "Needs a model; runs on the simulator unless you give a microscope config. You correct "
     "detections in the pop-up; every correction goes to the data engine."),
]  # fmt: skip

EVENT_STEPS = (
    "Movies (TIFF) with napari point CSVs of the events → <b>extract</b> crops → <b>index</b> them → "
    "make a training <b>set</b> → <b>train</b> a heatmap model → <b>detect</b> events in new movies. "
    "The first four run from the command line (<code>napari-fibsem events extract | index | set | train</code>; "
    "<code>napari-fibsem events synth</code> makes example movies); the last one is a dock."
)


class GettingStartedWidget(QWidget):
    """The workflow at a glance; every button opens the dock it names."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.buttons: dict[str, QPushButton] = {}
        content = QWidget()
        layout = QVBoxLayout(content)
        intro = QLabel(
            "<b>napari-fibsem</b>: machine learning on FIB-SEM images. Work goes in this order; "
            "each button opens the dock for the step (the same docks are under Plugins › napari-fibsem)."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.folder_status = QLabel()
        self.folder_status.setWordWrap(True)
        layout.addWidget(self.folder_status)

        box = QGroupBox("FIB-SEM segmentation and supervised runs")
        grid = QGridLayout(box)
        for row, (title, docks, needs) in enumerate(SEGMENTATION_STEPS):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 2 * row, 0)
            buttons = QWidget()
            line = QGridLayout(buttons)
            line.setContentsMargins(0, 0, 0, 0)
            for col, dock in enumerate(docks):
                line.addWidget(self._button(dock), 0, col)
            grid.addWidget(buttons, 2 * row, 1)
            text = QLabel(needs)
            text.setWordWrap(True)
            grid.addWidget(text, 2 * row + 1, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        layout.addWidget(box)

        events = QGroupBox("Event detection in live-cell movies (a separate workflow)")
        col = QVBoxLayout(events)
        text = QLabel(EVENT_STEPS)
        text.setWordWrap(True)
        col.addWidget(text)
        col.addWidget(self._button("Detect events"))
        layout.addWidget(events)

        tryit = QGroupBox("Nothing to hand yet?")
        col = QVBoxLayout(tryit)
        text = QLabel(
            "File › Open Sample › napari-fibsem gives a synthetic FIB-SEM scene with its labels; "
            "<code>napari-fibsem synth --out DIR</code> writes a whole synthetic dataset folder, and "
            "<code>napari-fibsem demo</code> runs every step end to end."
        )
        text.setWordWrap(True)
        col.addWidget(text)
        sample = QPushButton("Open a synthetic scene")
        sample.clicked.connect(lambda: self.viewer.open_sample(PLUGIN, "synthetic_ion"))
        col.addWidget(sample)
        layout.addWidget(tryit)
        layout.addStretch(1)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(VerticalScroll(content))
        viewer.layers.events.inserted.connect(self._update_folder)
        viewer.layers.events.removed.connect(self._update_folder)
        self._update_folder()

    def _button(self, dock: str) -> QPushButton:
        button = QPushButton(f"Open {dock}")
        button.setToolTip(f"Plugins › napari-fibsem › {dock}")
        button.clicked.connect(lambda: self.open_dock(dock))
        self.buttons[dock] = button
        return button

    def open_dock(self, dock: str) -> Any:
        """Open (or bring forward) the dock named ``dock``; returns its widget."""
        _, widget = self.viewer.window.add_plugin_dock_widget(PLUGIN, dock)
        return widget

    def _update_folder(self, *_: Any) -> None:
        folder = opened_folder(self.viewer)
        self.folder_status.setText(
            f"Opened here: <i>{folder}</i>. The docks' <i>Use the opened folder</i> buttons take it."
            if folder is not None
            else "No folder opened yet: drag a folder of TIFF images into napari to begin."
        )
