"""The keypoint dock's jobs besides placing points: pixel sizes, and pre-filling points to correct.

A mixin of :class:`~napari_fibsem.widgets.keypoints.KeypointWidget` (it uses the dock's labels,
image, layers and status). Pre-fill adds missing features only, so nothing placed by hand is
replaced; the pixel size typed for an image wins over its metadata's and goes into its CSV rows.
Reading a folder's metadata and running a model happen in worker threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QPushButton

from napari_fibsem.core.detection import detect_features
from napari_fibsem.core.io.imageio import read_labels
from napari_fibsem.widgets._common import start_worker
from napari_fibsem.widgets._keypoints_panels import NM, detect_with_model, metadata_pixel_sizes


class KeypointJobsMixin:
    """Pixel sizes and pre-fill for the dock, which supplies ``labels``, ``image``, ``commit``, ``status`` ..."""

    def _build_prefill(self) -> None:
        self.from_labels_button = QPushButton("Pre-fill from labels/")
        self.from_labels_button.setToolTip("Locate the features in this image's label mask (missing points only)")
        self.from_labels_button.clicked.connect(self.prefill_from_labels)
        self.from_model_button = QPushButton("Pre-fill from model…")
        self.from_model_button.setToolTip("Segment this image with a checkpoint and locate the features (missing points only)")
        self.from_model_button.clicked.connect(self._choose_model)

    # -- pixel size -----------------------------------------------------------------------------
    def effective_pixel_size(self: Any) -> float | None:
        """The current image's pixel size in metres: typed in (or from the CSV), else its metadata's."""
        name = self.current_name
        stored = self.labels.pixel_size(name) if (self.labels and name) else None
        return stored if stored is not None else self._metadata_pixel_size()

    def _metadata_pixel_size(self: Any) -> float | None:
        return self.image.metadata.pixel_size if self.image is not None else None

    def _show_pixel_size(self: Any) -> None:
        value, meta = self.effective_pixel_size(), self._metadata_pixel_size()
        source = "unknown" if value is None else ("from metadata" if value == meta else "entered")
        self.pixel_size.show_value(value, source)

    def set_pixel_size(self: Any, metres: float | None) -> None:
        """Give the current image this pixel size (None: back to its metadata's) and rewrite its rows."""
        name = self.current_name
        if self.labels is None or name is None:
            return
        self.commit()
        value = metres if metres is not None else self._metadata_pixel_size()
        try:
            self.labels.set_pixel_size(name, value)
        except (OSError, ValueError) as e:
            self._show_pixel_size()
            self._tell(f"pixel size not saved: {e}")
            return
        self._show_pixel_size()
        shown = "unknown" if value is None else f"{value / NM:.6g} nm/px"
        self.status.setText(f"{name}: pixel size {shown}, written to its {self.labels.count(name)} row(s)")

    def apply_pixel_size_to_all(self: Any, metres: float) -> None:
        """Give ``metres`` to every image whose file has no pixel size (reading their metadata off the UI thread)."""
        if self.labels is None or self._worker is not None:
            return
        self.commit()
        labels = self.labels
        self._busy(f"reading the metadata of {len(labels.images)} images…")

        def done(found: dict[str, float | None]) -> None:
            self._idle()
            if self.labels is not labels:
                return  # another folder was opened meanwhile
            targets = {name: metres for name, size in found.items() if size is None}
            try:
                labels.set_pixel_sizes(targets)
            except (OSError, ValueError) as e:
                self._tell(f"pixel size not saved: {e}")
                return
            self._show_pixel_size()
            self._tell(f"pixel size {metres / NM:.6g} nm/px set for {len(targets)} image(s) without metadata", "info")

        self._worker = start_worker(metadata_pixel_sizes, list(labels.images), on_returned=done, owner=self,
                                    on_errored=lambda e: (self._idle(), self._tell(f"reading metadata failed: {e}")))  # fmt: skip

    # -- pre-fill -------------------------------------------------------------------------------
    def _add_missing(self: Any, found, source: str) -> int:
        assert self.labels is not None and self.current_name is not None
        current = self.labels.points(self.current_name)
        new = {f.name: f.px for f in found if f.px is not None and f.name not in current and f.name != "ImageCentre"}
        if new:
            current_xy = {f: (p.x, p.y) for f, p in current.items()}
            try:
                self.labels.set_points(self.current_name, {**current_xy, **new}, self.effective_pixel_size(), source)
            except OSError as e:
                self._tell(f"could not save {self.labels.csv_path}: {e}")
                return 0
            self._load_points()
            self._refresh()
        self.status.setText(f"{self.current_name}: pre-filled {len(new)} point(s) from {source}; correct them by dragging")
        return len(new)

    def prefill_from_labels(self: Any) -> int:
        """Locate every feature in ``labels/<image>`` and add those not placed yet."""
        if self.labels is None or self.image is None or self.current_name is None:
            return 0
        self.commit()
        mask_path = self.labels.folder / "labels" / self.current_name
        if not mask_path.exists():
            self._tell(f"no label mask for {self.current_name} in labels/", "warning")
            return 0
        from napari_fibsem.core.io.classes import ClassMap

        cmap = ClassMap.for_folder(self.labels.folder)
        try:
            mask = read_labels(mask_path, cmap, shape=self.image.data.shape)
        except (OSError, ValueError) as e:
            self._tell(str(e))
            return 0
        found = detect_features(None, mask=mask, class_map=cmap, pixel_size=self.effective_pixel_size() or 1.0)
        return self._add_missing(found, "labels")

    def _choose_model(self: Any) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint (bundle, OpenFIBSEM .pt, ONNX)")
        if path:
            self.prefill_from_model(path)

    def prefill_from_model(self: Any, checkpoint: str | Path) -> None:
        """Segment the current image with ``checkpoint`` off the UI thread, then add missing points."""
        if self.image is None or self._worker is not None:
            return
        self.commit()
        image, name = self.image, self.current_name
        self._busy(f"segmenting {name} with {Path(checkpoint).name}…")

        def done(result: tuple[Any, str]) -> None:
            found, error = result
            self._idle()
            if error:
                self._tell(f"pre-fill failed: {error}")
            elif self.current_name == name:  # the person may have moved on meanwhile
                self._add_missing(found, Path(checkpoint).stem)

        self._worker = start_worker(detect_with_model, checkpoint, image, self.effective_pixel_size(), on_returned=done,
                                    on_errored=lambda e: done((None, f"{type(e).__name__}: {e}")), owner=self)  # fmt: skip

    def _busy(self: Any, message: str) -> None:
        self.progress.setRange(0, 0)
        self.progress.setVisible(True)
        self.from_model_button.setEnabled(False)
        self.pixel_size.all_button.setEnabled(False)
        self.status.setText(message)

    def _idle(self: Any) -> None:
        self._worker = None
        self.progress.setVisible(False)
        self.from_model_button.setEnabled(True)
        self.pixel_size.all_button.setEnabled(self.pixel_size.value_shown() is not None)
