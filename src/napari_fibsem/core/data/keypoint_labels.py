"""Keypoint labelling state for a folder of images: one point per feature per image, in a CSV.

The keypoint widget is a view over this class; everything it changes goes through here and is
written at once (atomically), so a crash loses at most the change being made. Rows for images that
are not in the folder, and free columns, are kept untouched. OpenFIBSEM CSVs (``px.x``, names
without ``.tif``) are read; the file is written back with our column names.

Each image also has a pixel size (metres per pixel, the CSV's ``pixel_size`` column): taken from
the CSV when its rows carry one, set by the person for images whose files have no metadata, and
written into every row of that image. Images without points keep it only for the session (the
CSV has no row to hold it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from napari_fibsem.core.data.image_folder_state import ImageFolderState
from napari_fibsem.core.io.keypoints import Keypoint, read_keypoints, write_keypoints

MANUAL = "manual"


class KeypointLabels(ImageFolderState):
    """Points of every image in ``folder``, backed by ``csv_path`` (default ``folder/keypoints.csv``)."""

    def __init__(self, folder: str | Path, csv_path: str | Path | None = None) -> None:
        super().__init__(folder)
        self.csv_path = Path(csv_path) if csv_path is not None else self.folder / "keypoints.csv"
        names = {p.name for p in self.images}
        by_stem = {p.stem: p.name for p in self.images}
        rows = read_keypoints(self.csv_path) if self.csv_path.exists() else []
        self._rows = [r if r.filename in names else replace(r, filename=by_stem.get(r.filename, r.filename)) for r in rows]
        self._pixel_sizes: dict[str, float] = {r.filename: r.pixel_size for r in self._rows if r.pixel_size}
        if not self.csv_path.exists():
            self.save()  # created empty (header only), so the person sees where points will go

    # -- reading ---------------------------------------------------------------------------------
    def points(self, image: str) -> dict[str, Keypoint]:
        """Feature -> point for one image (the last row wins if a CSV repeats a feature)."""
        return {r.feature: r for r in self._rows if r.filename == image}

    def count(self, image: str) -> int:
        return len(self.points(image))

    def pixel_size(self, image: str) -> float | None:
        """The image's pixel size in metres: set here or read from its CSV rows; None when unknown."""
        return self._pixel_sizes.get(image)

    def features_used(self) -> list[str]:
        """Every feature named anywhere in the CSV, in order of first appearance."""
        return list(dict.fromkeys(r.feature for r in self._rows))

    def placed(self) -> dict[str, set[str]]:
        """Image -> the features it has points for (one pass over the rows, for folder overviews)."""
        out: dict[str, set[str]] = {}
        for r in self._rows:
            out.setdefault(r.filename, set()).add(r.feature)
        return out

    def missing(self, image: str, features: Iterable[str]) -> list[str]:
        """Those of ``features`` the image has no point for yet (order kept)."""
        placed = self.points(image)
        return [f for f in features if f not in placed]

    def is_done(self, i: int, features: Iterable[str] | None = None) -> bool:
        """Whether image ``i`` has a point for each of ``features`` (default: every feature of the CSV)."""
        features = self.features_used() if features is None else features
        return not self.missing(self.images[i].name, features)

    @property
    def rows(self) -> list[Keypoint]:
        return list(self._rows)

    # -- changing (each saves) -------------------------------------------------------------------
    def set_points(
        self,
        image: str,
        points: Mapping[str, tuple[float, float]],
        pixel_size: float | None = None,
        source: str = MANUAL,
    ) -> bool:
        """Make ``points`` (feature -> (x, y)) the image's points; saves and returns True if anything changed.

        A point that moves keeps its source and is marked ``corrected`` when a model proposed it;
        a new point gets ``source`` and ``pixel_size`` (default: the image's, see :meth:`pixel_size`);
        features missing from ``points`` are deleted.
        """
        if pixel_size is None:
            pixel_size = self.pixel_size(image)
        elif self.pixel_size(image) is None:
            self._pixel_sizes[image] = float(pixel_size)
        old = self.points(image)
        new: dict[str, Keypoint] = {}
        for feature, (x, y) in points.items():
            prev = old.get(feature)
            if prev is None:
                new[feature] = Keypoint(image, feature, float(x), float(y), pixel_size, False, source)
            elif (prev.x, prev.y) == (float(x), float(y)):
                new[feature] = prev
            else:
                moved_model_point = prev.source not in ("", MANUAL)
                new[feature] = replace(prev, x=float(x), y=float(y), corrected=prev.corrected or moved_model_point)
        if new == old:
            return False
        others = [r for r in self._rows if r.filename != image]
        self._rows = others + list(new.values())
        self.save()
        return True

    def set_point(self, image: str, feature: str, x: float, y: float, pixel_size: float | None = None,
                  source: str = MANUAL) -> bool:  # fmt: skip
        current = {f: (p.x, p.y) for f, p in self.points(image).items()}
        return self.set_points(image, {**current, feature: (x, y)}, pixel_size, source)

    def delete_point(self, image: str, feature: str) -> bool:
        current = {f: (p.x, p.y) for f, p in self.points(image).items() if f != feature}
        return self.set_points(image, current)

    def set_pixel_sizes(self, sizes: Mapping[str, float | None]) -> bool:
        """Set images' pixel sizes (metres; None: unknown) and rewrite their rows; saves if any row changed."""
        for image, size in sizes.items():
            if size is not None and not (math.isfinite(size) and size > 0):
                raise ValueError(f"{image}: pixel size must be a positive number of metres, got {size!r}")
            if size is None:
                self._pixel_sizes.pop(image, None)
            else:
                self._pixel_sizes[image] = float(size)
        rows = [replace(r, pixel_size=self.pixel_size(r.filename)) if r.filename in sizes else r for r in self._rows]
        if rows == self._rows:
            return False
        self._rows = rows
        self.save()
        return True

    def set_pixel_size(self, image: str, size: float | None) -> bool:
        return self.set_pixel_sizes({image: size})

    def save(self) -> Path:
        return write_keypoints(self.csv_path, self._rows)
