"""Drive a microscope (the simulator by default) from napari: acquire, move, save and restore states.

A thin view over :mod:`napari_fibsem.core.microscope`. Every instrument call runs in a worker
thread (a real stage move takes seconds) and the buttons are disabled meanwhile; the result comes
back to the UI thread. Double-clicking an image moves the stage so the clicked point comes to the
centre (``stable_move``). A move the core refuses as too large asks the person and is retried with
``confirm=True`` only if they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_fibsem.core.microscope import (
    ConfirmationRequired,
    ImageSettings,
    Microscope,
    MicroscopeError,
    MicroscopeState,
    StagePosition,
    connect,
)
from napari_fibsem.widgets._common import start_worker

if TYPE_CHECKING:
    import napari


def layer_name(beam: str) -> str:
    return f"{beam} beam"


class MicroscopeWidget(QWidget):
    """Connect, acquire in either beam, move the stage, keep a list of saved states."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.microscope: Microscope | None = None
        self.states: list[MicroscopeState] = []
        self._worker: Any = None
        self.ask_confirmation: Callable[[str], bool] = self._ask

        self.connect_button = QPushButton("Connect simulator")
        self.connect_button.clicked.connect(lambda: self.connect_microscope(None))
        self.config_button = QPushButton("Connect from config…")
        self.config_button.clicked.connect(self._choose_config)
        self.beam = QComboBox()
        self.beam.addItems(["electron", "ion"])
        self.hfw = QDoubleSpinBox(decimals=1, minimum=1.0, maximum=3000.0, value=150.0, suffix=" µm")
        self.width = QSpinBox(minimum=64, maximum=6144, value=1536, singleStep=128)
        self.height = QSpinBox(minimum=64, maximum=4096, value=1024, singleStep=128)
        self.acquire_button = QPushButton("Acquire")
        self.acquire_button.clicked.connect(lambda: self.acquire())
        self.dx = QDoubleSpinBox(decimals=2, minimum=-5000, maximum=5000, suffix=" µm")
        self.dy = QDoubleSpinBox(decimals=2, minimum=-5000, maximum=5000, suffix=" µm")
        self.move_button = QPushButton("Move stage by (dx, dy)")
        self.move_button.clicked.connect(lambda: self.move_relative(self.dx.value() * 1e-6, self.dy.value() * 1e-6))
        self.stage_label = QLabel("stage: –")
        self.save_state_button = QPushButton("Save state")
        self.save_state_button.clicked.connect(self.save_state)
        self.restore_button = QPushButton("Restore selected")
        self.restore_button.clicked.connect(lambda: self.restore_state(self.state_list.currentRow()))
        self.state_list = QListWidget()
        self.status = QLabel("Not connected. Double-click an acquired image to centre that point.")
        self.status.setWordWrap(True)

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
        move = QFormLayout()
        move.addRow("dx (+ right)", self.dx)
        move.addRow("dy (+ up)", self.dy)
        layout.addLayout(move)
        layout.addWidget(self.move_button)
        layout.addWidget(self.stage_label)
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

        def finish(outcome: tuple[Any, BaseException | None, Any]) -> None:
            self._worker = None
            result, error, stage = outcome
            self._update_buttons()
            if isinstance(error, ConfirmationRequired) and self.ask_confirmation(str(error)):
                self._run(what, partial(call, confirm=True), done)  # only moves ask, and they take confirm
                return
            if error is not None:
                self.status.setText(f"{what} failed: {error}")
            else:
                done(result)
                self._show_stage(stage)

        def guarded() -> tuple[Any, BaseException | None, Any]:
            """The call, then the stage readout, both in the worker: the UI thread never waits on the instrument."""
            try:
                result = call()
            except (MicroscopeError, ValueError, OSError) as e:
                return None, e, None
            m = result if isinstance(result, Microscope) else self.microscope
            try:
                stage = m.get_stage_position() if m is not None else None
            except MicroscopeError as e:
                stage = e
            return result, None, stage

        self._worker = start_worker(guarded, on_returned=finish)
        self._update_buttons()

    def _ask(self, message: str) -> bool:
        answer = QMessageBox.question(self, "Large move", f"{message}\n\nMove anyway?")
        return answer == QMessageBox.StandardButton.Yes

    # -- actions --------------------------------------------------------------------------------
    def _choose_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Microscope configuration (YAML)", filter="YAML (*.yaml *.yml)")
        if path:
            self.connect_microscope(Path(path))

    def connect_microscope(self, config: Path | dict | None) -> None:
        def done(m: Microscope) -> None:
            self.microscope = m
            self.status.setText(f"connected: {m.config.manufacturer}")

        self._run("connecting", lambda: connect(config), done)

    def image_settings(self) -> ImageSettings:
        return ImageSettings(
            resolution=(self.width.value(), self.height.value()), hfw=self.hfw.value() * 1e-6, beam=self.beam.currentText()
        )

    def acquire(self, settings: ImageSettings | None = None) -> None:
        if self.microscope is None:
            return
        settings = settings or self.image_settings()
        m = self.microscope

        def done(image) -> None:
            name = layer_name(settings.beam.value)
            if name in self.viewer.layers:
                self.viewer.layers[name].data = image.data
                self.viewer.layers[name].metadata["fibsem_image"] = image
            else:
                layer = self.viewer.add_image(image.data, name=name, metadata={"fibsem_image": image})
                layer.mouse_double_click_callbacks.append(self._on_double_click)
                self.viewer.reset_view()
            self.status.setText(f"acquired {settings.beam.value} image, {image.metadata.pixel_size * 1e9:.1f} nm/px")

        self._run("acquiring", lambda: m.acquire_image(settings), done)

    def _on_double_click(self, layer, event) -> None:
        self.centre_on(layer, layer.world_to_data(event.position))

    def centre_on(self, layer, data_position) -> None:
        """Stable-move so the pixel ``data_position`` (row, col) of ``layer``'s image comes to the centre."""
        image = layer.metadata.get("fibsem_image")
        if self.microscope is None or image is None:
            return
        h, w = image.data.shape
        row, col = data_position[-2], data_position[-1]
        ps = image.metadata.pixel_size
        dx, dy = (col - (w - 1) / 2) * ps, -(row - (h - 1) / 2) * ps
        settings = _settings_of(image) or self.image_settings()
        move = partial(self.microscope.stable_move, dx, dy, image.metadata.beam_type)
        self._run("moving", move, lambda _pos: self.acquire(settings))

    def move_relative(self, dx: float, dy: float) -> None:
        if self.microscope is None:
            return
        move = partial(self.microscope.move_stage_relative, dx=dx, dy=dy)
        self._run("moving", move, lambda pos: self.status.setText("moved"))

    def save_state(self) -> None:
        if self.microscope is None:
            return
        m = self.microscope

        def done(state: MicroscopeState) -> None:
            self.states.append(state)
            s = state.stage
            self.state_list.addItem(f"{len(self.states)}: x {s.x * 1e6:.2f} µm, y {s.y * 1e6:.2f} µm, z {s.z * 1e6:.2f} µm")
            self.status.setText("state saved")

        self._run("saving state", m.get_state, done)

    def restore_state(self, index: int) -> None:
        if self.microscope is None or not 0 <= index < len(self.states):
            return
        restore = partial(self.microscope.set_state, self.states[index])
        self._run("restoring state", restore, lambda _s: self.status.setText(f"state {index + 1} restored"))

    def _show_stage(self, s: StagePosition | MicroscopeError | None) -> None:
        if s is None:
            return
        if isinstance(s, MicroscopeError):
            self.stage_label.setText(f"stage: unknown ({s})")
            return
        self.stage_label.setText(
            f"stage: x {s.x * 1e6:.2f} µm, y {s.y * 1e6:.2f} µm, z {s.z * 1e6:.2f} µm, "
            f"r {s.r * 57.2958:.1f}°, t {s.t * 57.2958:.1f}°"
        )
        self._update_buttons()

    def _update_buttons(self) -> None:
        on = self.microscope is not None and not self.busy
        for b in (self.acquire_button, self.move_button, self.save_state_button, self.restore_button):
            b.setEnabled(on)
        self.connect_button.setEnabled(not self.busy)
        self.config_button.setEnabled(not self.busy)


def _settings_of(image) -> ImageSettings | None:
    from napari_fibsem.core.microscope import from_dict

    data = (image.metadata.extra or {}).get("image_settings")
    if not data:
        return None
    try:
        settings = from_dict(ImageSettings, data)
    except (TypeError, ValueError):
        return None
    return ImageSettings(settings.resolution, settings.dwell_time, settings.hfw, settings.beam, settings.autocontrast)
