"""Drive a microscope (the simulator by default) from napari: acquire, move, mill, save and restore states.

A thin view over :mod:`napari_fibsem.core.microscope`. Every instrument call runs in a worker
thread (a real stage move takes seconds) and the buttons are disabled meanwhile; the result comes
back to the UI thread, after a fresh stage readout read in the same worker. While connected and
idle, a timer re-reads the stage every 2 s (optional), also in a worker. Failures show in the
dock's status line and as napari notifications.

Images go into one layer per beam (``_microscope_layers``), scaled to metres, the ion image to the
right of the electron image. Every stage readout is compared with the stage position each image
was taken at: an image taken before the stage moved is marked stale (layer name and a warning in
the dock) and milling refuses a stale ion image. Milling patterns are drawn in a Shapes layer on
the ion image (``_milling_panel``). Double-clicking an image moves the stage so the clicked point
comes to the centre (``stable_move``) and re-acquires that image, and the other beam's too when
both beam layers are shown. A move the core refuses as too large asks the person and is retried
with ``confirm=True`` only if they agree. The stage side (readout, staleness, centring, moves)
lives in ``_microscope_stage``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.microscope import (
    BeamType,
    ConfirmationRequired,
    ImageSettings,
    Microscope,
    MicroscopeError,
    MicroscopeState,
    StagePosition,
    connect,
)
from napari_fibsem.widgets._common import start_worker
from napari_fibsem.widgets._microscope_layers import layer_name, settings_of, show_image
from napari_fibsem.widgets._microscope_stage import STAGE_REFRESH_MS, StageControls
from napari_fibsem.widgets._milling_panel import MillingPanel

if TYPE_CHECKING:
    import napari


BOTH = "both"
__all__ = ["MicroscopeWidget", "layer_name"]
_NOTIFY = {"info": show_info, "warning": show_warning, "error": show_error}


class MicroscopeWidget(StageControls, QWidget):
    """Connect, acquire in one or both beams, move the stage, mill, keep a list of saved states."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.microscope: Microscope | None = None
        self.states: list[MicroscopeState] = []
        self._worker: Any = None
        self.task: str | None = None  # what the running worker does ("milling", ...)
        self._calls = 0  # instrument calls started; a stage readout older than the last is dropped
        self._reading_stage = False
        self.stage: StagePosition | MicroscopeError | None = None  # the latest stage readout
        self.stale: dict[str, str] = {}  # beam -> why its image no longer shows what is under it
        self.ask_confirmation: Callable[[str], bool] = self._ask

        self.connect_button = QPushButton("Connect simulator")
        self.connect_button.clicked.connect(lambda: self.connect_microscope(None))
        self.config_button = QPushButton("Connect from config…")
        self.config_button.clicked.connect(self._choose_config)
        self.beam = QComboBox()
        self.beam.addItems(["electron", "ion", BOTH])
        self.hfw = QDoubleSpinBox(decimals=1, minimum=1.0, maximum=3000.0, value=150.0, suffix=" µm")
        self.width = QSpinBox(minimum=64, maximum=6144, value=1536, singleStep=128)
        self.height = QSpinBox(minimum=64, maximum=4096, value=1024, singleStep=128)
        self.acquire_button = QPushButton("Acquire")
        self.acquire_button.clicked.connect(lambda: self.acquire())
        self.stale_label = QLabel()
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet("color: #ffa629; font-weight: bold")
        self.stale_label.hide()
        self.dx = QDoubleSpinBox(decimals=2, minimum=-5000, maximum=5000, suffix=" µm")
        self.dy = QDoubleSpinBox(decimals=2, minimum=-5000, maximum=5000, suffix=" µm")
        self.move_button = QPushButton("Move stage by (dx, dy)")
        self.move_button.clicked.connect(
            lambda: self.move_relative(self.dx.value() * 1e-6, self.dy.value() * 1e-6)
        )
        self.stage_label = QLabel("stage: –")
        self.stage_label.setWordWrap(True)
        self.live_stage = QCheckBox(f"Refresh the stage readout every {STAGE_REFRESH_MS / 1000:g} s")
        self.live_stage.setChecked(True)
        self.live_stage.toggled.connect(self._live_toggled)
        self.stage_timer = QTimer(self)
        self.stage_timer.setInterval(STAGE_REFRESH_MS)
        self.stage_timer.timeout.connect(self.refresh_stage)
        self.save_state_button = QPushButton("Save state")
        self.save_state_button.clicked.connect(self.save_state)
        self.restore_button = QPushButton("Restore selected")
        self.restore_button.clicked.connect(lambda: self.restore_state(self.state_list.currentRow()))
        self.state_list = QListWidget()
        self.status = QLabel("Not connected. Double-click an acquired image to centre that point.")
        self.status.setWordWrap(True)
        self.milling = MillingPanel(self)

        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.connect_button)
        row.addWidget(self.config_button)
        layout.addLayout(row)
        form = QFormLayout()
        form.addRow("Beam", self.beam)
        form.addRow("Field width", self.hfw)
        size = QHBoxLayout()
        size.addWidget(self.width)
        size.addWidget(QLabel("x"))
        size.addWidget(self.height)
        form.addRow("Resolution", size)
        layout.addLayout(form)
        layout.addWidget(self.acquire_button)
        layout.addWidget(self.stale_label)
        move = QFormLayout()
        move.addRow("dx (+ right)", self.dx)
        move.addRow("dy (+ up)", self.dy)
        layout.addLayout(move)
        layout.addWidget(self.move_button)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.live_stage)
        box = QGroupBox("Milling (draw in 'milling patterns' on the ion image)")
        QVBoxLayout(box).addWidget(self.milling)
        layout.addWidget(box)
        row = QHBoxLayout()
        row.addWidget(self.save_state_button)
        row.addWidget(self.restore_button)
        layout.addLayout(row)
        layout.addWidget(self.state_list, 1)
        layout.addWidget(self.status)
        self._update_buttons()

    # -- running instrument calls off the UI thread ---------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _run(self, what: str, call: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run ``call`` in a worker; ``done(result)`` on the UI thread, errors shown in the status."""
        if self.busy:
            return
        self.status.setText(f"{what}…")
        self.task = what
        self._calls += 1

        def finish(outcome: tuple[Any, BaseException | None, Any]) -> None:
            self._worker = None
            self.task = None
            result, error, stage = outcome
            self._set_stage(stage)
            self._update_buttons()
            if isinstance(error, ConfirmationRequired):
                if self.ask_confirmation(str(error)):
                    self._run(what, partial(call, confirm=True), done)  # only moves ask; they take confirm
                else:
                    self.tell(f"{what} cancelled: you answered No, nothing moved", "info")
            elif error is not None:
                self.tell(f"{what} failed: {error}", "error")
            else:
                done(result)
                self._update_buttons()

        def guarded() -> tuple[Any, BaseException | None, Any]:
            """The call, then the stage readout, both in the worker (the UI thread never waits on
            the instrument); the stage is read after a failure too: a failed move may have moved."""
            try:
                result, error = call(), None
            except (MicroscopeError, ValueError, OSError) as e:
                result, error = None, e
            m = result if isinstance(result, Microscope) else self.microscope
            try:
                stage = m.get_stage_position() if m is not None else None
            except MicroscopeError as e:
                stage = e
            return result, error, stage

        self._worker = start_worker(guarded, on_returned=finish, owner=self)
        self._update_buttons()

    def tell(self, text: str, level: str | None = None) -> None:
        """Show ``text`` in the status line and, with a ``level`` (info, warning, error), as a napari
        notification too."""
        self.status.setText(text)
        if level is not None:
            _NOTIFY[level](text)

    # -- actions --------------------------------------------------------------------------------
    def _choose_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Microscope configuration (YAML)", filter="YAML (*.yaml *.yml)"
        )
        if path:
            self.connect_microscope(Path(path))

    def connect_microscope(self, config: Path | dict | None) -> None:
        def done(m: Microscope) -> None:
            self.microscope = m
            self.milling.set_currents(m.config.preset_currents("ion"))
            self.status.setText(f"connected: {m.config.manufacturer}")
            self._live_toggled(self.live_stage.isChecked())

        self._run("connecting", lambda: connect(config), done)

    def image_settings(self) -> ImageSettings:
        """The form's settings (in the electron beam when "both" is chosen)."""
        beam = self.beam.currentText()
        return ImageSettings(
            resolution=(self.width.value(), self.height.value()),
            hfw=self.hfw.value() * 1e-6,
            beam=BeamType.ELECTRON if beam == BOTH else beam,
        )

    def settings_like(self, image) -> ImageSettings:
        """Settings that acquire ``image`` again (from its metadata; else the form's, in its beam)."""
        beam = BeamType.of(image.metadata.beam_type)
        return settings_of(image) or dataclasses.replace(self.image_settings(), beam=beam)

    def acquire(self, settings: ImageSettings | None = None, beams: str | None = None) -> None:
        """Acquire in ``settings.beam``, or in ``beams`` ("electron", "ion", "both"; default the
        beam chosen in the form); both beams are acquired one after the other in one worker."""
        if self.microscope is None:
            return
        if settings is None:
            choice = beams or self.beam.currentText()
            kinds = list(BeamType) if choice == BOTH else [BeamType.of(choice)]
            base = dataclasses.replace(self.image_settings(), beam=kinds[0])
            self._acquire_each([dataclasses.replace(base, beam=b) for b in kinds])
        else:
            self._acquire_each([settings])

    def _acquire_each(
        self, wanted: list[ImageSettings], prefix: str = "", then: Callable[[], None] | None = None
    ) -> None:
        m = self.microscope

        def done(images: list) -> None:
            for image in images:
                self.show_image(image)
            taken = ", ".join(
                f"{i.metadata.beam_type} image ({i.metadata.pixel_size * 1e9:.1f} nm/px)" for i in images
            )
            self.status.setText(f"{prefix}acquired {taken}")
            if then is not None:
                then()

        self._run("acquiring", lambda: [m.acquire_image(s) for s in wanted], done)

    def show_image(self, image) -> Any:
        """Put ``image`` into its beam's layer, scaled to metres; the ion image carries the patterns."""
        layer, reset = show_image(self.viewer, image, self._on_double_click)
        if image.metadata.beam_type == BeamType.ION.value:
            self.milling.attach(layer)
        self._refresh_stale()
        if reset:
            self.viewer.reset_view()
        return layer

    def save_state(self) -> None:
        if self.microscope is None:
            return
        m = self.microscope

        def done(state: MicroscopeState) -> None:
            self.states.append(state)
            s = state.stage
            self.state_list.addItem(
                f"{len(self.states)}: x {s.x * 1e6:.2f} µm, y {s.y * 1e6:.2f} µm, z {s.z * 1e6:.2f} µm"
            )
            self.status.setText("state saved")

        self._run("saving state", m.get_state, done)

    def restore_state(self, index: int) -> None:
        if self.microscope is None or not 0 <= index < len(self.states):
            return
        restore = partial(self.microscope.set_state, self.states[index])
        self._run("restoring state", restore, lambda _s: self.status.setText(f"state {index + 1} restored"))

    def _update_buttons(self) -> None:
        on = self.microscope is not None and not self.busy
        for b in (self.acquire_button, self.move_button, self.save_state_button, self.restore_button):
            b.setEnabled(on)
        self.connect_button.setEnabled(not self.busy)
        self.config_button.setEnabled(not self.busy)
        self.milling.update_buttons()
