"""The microscope dock's stage side: the periodic readout, stale images, centring and moves.

Every stage readout (after each instrument call, and every ``STAGE_REFRESH_MS`` while idle) is
shown and compared with where each image was taken (``mark_stale``). Double-clicking an image
stable-moves the clicked point to the centre and re-acquires; a plain relative move comes from
the dx, dy boxes. ``MicroscopeWidget`` takes these methods from ``StageControls``, which uses the
dock's widgets, its ``_run`` / ``_acquire_each`` / ``settings_like`` and its readout state.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QCheckBox, QLabel, QMessageBox

from napari_fibsem.core.microscope import ImageSettings, Microscope, MicroscopeError, StagePosition
from napari_fibsem.widgets._common import start_worker
from napari_fibsem.widgets._microscope_layers import BEAMS, beam_layer, mark_stale

if TYPE_CHECKING:
    import napari
    from qtpy.QtCore import QTimer

STAGE_REFRESH_MS = 2000


class StageControls:
    """Stage readout and moves of ``MicroscopeWidget`` (a mixin; the dock builds the widgets)."""

    viewer: napari.viewer.Viewer
    microscope: Microscope | None
    stage: StagePosition | MicroscopeError | None
    stale: dict[str, str]
    status: QLabel
    stage_label: QLabel
    stale_label: QLabel
    live_stage: QCheckBox
    stage_timer: QTimer
    _calls: int
    _reading_stage: bool
    busy: bool
    _run: Callable[..., None]
    _acquire_each: Callable[..., None]
    settings_like: Callable[[Any], ImageSettings]
    tell: Callable[..., None]

    def refresh_stage(self) -> None:
        """Re-read the stage in a worker (the timer calls this); only while connected and idle,
        one read at a time, and a reading is dropped if an instrument call started meanwhile."""
        m = self.microscope
        if m is None or not m.connected or self.busy or self._reading_stage:
            return
        self._reading_stage = True
        calls = self._calls

        def read() -> StagePosition | MicroscopeError:
            try:
                return m.get_stage_position()
            except MicroscopeError as e:
                return e

        def shown(s: StagePosition | MicroscopeError | None) -> None:
            self._reading_stage = False
            if not self.busy and calls == self._calls and m is self.microscope:
                self._set_stage(s)

        start_worker(read, on_returned=shown, on_errored=lambda _e: shown(None), owner=self)

    def _live_toggled(self, on: bool) -> None:
        if on and self.microscope is not None:
            self.stage_timer.start()
        else:
            self.stage_timer.stop()

    def _ask(self, message: str) -> bool:
        answer = QMessageBox.question(self, "Large move", f"{message}\n\nMove anyway?")
        return answer == QMessageBox.StandardButton.Yes

    def _on_double_click(self, layer, event) -> None:
        position = layer.world_to_data(event.position)
        h, w = layer.data.shape[-2:]
        if not (-0.5 <= position[-2] <= h - 0.5 and -0.5 <= position[-1] <= w - 0.5):
            self.status.setText(
                f"double-click inside the {layer.name} image (the selected layer) to centre there"
            )
            return
        self.centre_on(layer, position)

    def centre_on(self, layer, data_position) -> None:
        """Stable-move so the pixel ``data_position`` (row, col) of ``layer``'s image comes to the
        centre, then re-acquire that image, and the other beam's when both beam layers are shown."""
        image = layer.metadata.get("fibsem_image")
        if self.microscope is None or image is None:
            return
        beam = image.metadata.beam_type
        if beam in self.stale:  # its pixels no longer say where things are: the move would miss
            self.tell(f"cannot centre: the {beam} image is stale ({self.stale[beam]}); acquire it again", "warning")
            return
        h, w = image.data.shape
        row, col = data_position[-2], data_position[-1]
        ps = image.metadata.pixel_size
        dx, dy = (col - (w - 1) / 2) * ps, -(row - (h - 1) / 2) * ps
        shown = [la for la in (beam_layer(self.viewer, b) for b in BEAMS) if la is not None and la.visible]
        again = [self.settings_like(la.metadata["fibsem_image"]) for la in shown if la is not layer]
        again = sorted([self.settings_like(image), *again], key=lambda s: BEAMS.index(s.beam.value))
        move = partial(self.microscope.stable_move, dx, dy, image.metadata.beam_type)
        look = partial(self._look_at, layer)
        self._run("moving", move, lambda _pos: self._acquire_each(again, "centred on the point; ", look))

    def _look_at(self, layer) -> None:
        """Centre the view on ``layer``'s image centre, where the double-clicked feature now is
        (napari's own double-click zoomed in around the clicked point; the zoom is kept)."""
        h, w = layer.data.shape[-2:]
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 keeps the camera there
        camera = scene.camera if hasattr(scene, "camera") else self.viewer.camera
        camera.center = tuple(layer.data_to_world(((h - 1) / 2, (w - 1) / 2))[-2:])

    def move_relative(self, dx: float, dy: float) -> None:
        if self.microscope is None:
            return
        move = partial(self.microscope.move_stage_relative, dx=dx, dy=dy)
        self._run("moving", move, lambda pos: self.status.setText("moved"))

    def _set_stage(self, s: StagePosition | MicroscopeError | None) -> None:
        """A new stage readout: show it and mark the images taken elsewhere stale."""
        if s is None:
            return
        self.stage = s
        if isinstance(s, MicroscopeError):
            self.stage_label.setText(f"stage: unknown ({s})")
        else:
            self.stage_label.setText(
                f"stage: x {s.x * 1e6:.2f} µm, y {s.y * 1e6:.2f} µm, z {s.z * 1e6:.2f} µm, "
                f"r {s.r * 57.2958:.1f}°, t {s.t * 57.2958:.1f}°"
            )
        self._refresh_stale()

    def _refresh_stale(self) -> None:
        self.stale = mark_stale(self.viewer, self.stage)
        lines = [f"{beam} image stale: {why} — acquire again" for beam, why in self.stale.items()]
        self.stale_label.setText("\n".join(lines))
        self.stale_label.setVisible(bool(lines))
