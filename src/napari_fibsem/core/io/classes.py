"""Class maps: which label id means which object, and how it is drawn.

Every label TIFF, model and detection rule refers to classes through a `ClassMap`, so that a lab
with its own classes (or its own order) only has to change one YAML file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.atomic import atomic_write_text

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


class ClassMapError(FibsemError, ValueError):
    """A class map file or a label mask does not agree with the class map."""


@dataclass(frozen=True)
class ClassInfo:
    """One class: its name and display colour (``#rrggbb``)."""

    name: str
    color: str

    def rgb(self) -> tuple[float, float, float]:
        """Colour as floats in [0, 1]."""
        h = self.color.lstrip("#")
        return tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


AUTOLAMELLA_CLASSES: dict[int, ClassInfo] = {
    0: ClassInfo("background", "#000000"),
    1: ClassInfo("lamella", "#ff0000"),
    2: ClassInfo("manipulator", "#00ff00"),
    3: ClassInfo("landing_post", "#0000ff"),
    4: ClassInfo("copper_adaptor", "#00ffff"),
    5: ClassInfo("volume_block", "#ff00ff"),
}


@dataclass(frozen=True)
class ClassMap:
    """Ordered mapping of label id → :class:`ClassInfo`; id 0 is background."""

    classes: Mapping[int, ClassInfo] = field(default_factory=lambda: dict(AUTOLAMELLA_CLASSES))

    def __post_init__(self) -> None:
        ordered = dict(sorted((int(k), v) for k, v in self.classes.items()))
        if not ordered:
            raise ClassMapError("a class map needs at least one class")
        for cid, info in ordered.items():
            if not 0 <= cid <= 255:
                raise ClassMapError(f"class id {cid} is outside 0..255 (labels are uint8)")
            if not _HEX.match(info.color):
                raise ClassMapError(f"class {cid} ({info.name!r}): colour {info.color!r} is not #rrggbb")
        names = [c.name for c in ordered.values()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ClassMapError(f"duplicate class names: {dupes}")
        object.__setattr__(self, "classes", ordered)

    @classmethod
    def default(cls) -> ClassMap:
        """The AutoLamella six classes."""
        return cls(dict(AUTOLAMELLA_CLASSES))

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassMap:
        """Ids 0..n-1 in order, colours from a fixed palette."""
        return cls({i: ClassInfo(n, _fallback_colour(i)) for i, n in enumerate(names)})

    # -- access ---------------------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        return list(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes.values()]

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, cid: int) -> ClassInfo:
        return self.classes[cid]

    def id_of(self, name: str) -> int:
        """Label id of the class called ``name``; KeyError lists the known names."""
        for cid, info in self.classes.items():
            if info.name == name:
                return cid
        raise KeyError(f"no class named {name!r}; known classes: {self.names}")

    @property
    def num_classes(self) -> int:
        """Channels a model needs: ``max id + 1`` (ids may have gaps)."""
        return max(self.classes) + 1

    # -- validation -----------------------------------------------------------------------
    def check_mask(self, mask: np.ndarray, source: str | Path = "<array>") -> None:
        """Raise :class:`ClassMapError` naming ``source`` if ``mask`` holds ids outside the map."""
        present = np.unique(mask)
        bad = sorted(int(v) for v in present if int(v) not in self.classes)
        if bad:
            raise ClassMapError(
                f"{source}: label values {bad} are not in the class map (known ids {self.ids})"
            )

    # -- YAML -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"classes": {cid: {"name": c.name, "color": c.color} for cid, c in self.classes.items()}}

    def save(self, path: str | Path) -> None:
        """Write ``classes.yaml`` atomically."""
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: object, source: str | Path = "<dict>") -> ClassMap:
        if not isinstance(data, Mapping) or not isinstance(data.get("classes"), Mapping):
            raise ClassMapError(f"{source}: expected a mapping with a 'classes' key")
        classes: dict[int, ClassInfo] = {}
        for key, entry in data["classes"].items():
            try:
                cid = int(key)
            except (TypeError, ValueError):
                raise ClassMapError(f"{source}: class id {key!r} is not an integer") from None
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ClassMapError(f"{source}: class {cid} needs a 'name'")
            unknown = set(entry) - {"name", "color"}
            if unknown:
                raise ClassMapError(f"{source}: class {cid} has unknown keys {sorted(unknown)}")
            color = entry.get("color") or _fallback_colour(cid)
            classes[cid] = ClassInfo(str(entry["name"]), str(color))
        try:
            return cls(classes)
        except ClassMapError as e:
            raise ClassMapError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> ClassMap:
        """Read a class-map YAML; errors name the file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ClassMapError(f"{path}: cannot read class map ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise ClassMapError(f"{path}: not valid YAML ({e})") from None
        return cls.from_dict(data, source=path)

    @classmethod
    def for_folder(cls, folder: str | Path) -> ClassMap:
        """The folder's ``classes.yaml`` if present, else the AutoLamella default."""
        p = Path(folder) / "classes.yaml"
        return cls.load(p) if p.exists() else cls.default()


_EXTRA_COLOURS = ["#ffff00", "#ff8000", "#8000ff", "#0080ff", "#80ff00", "#ff0080", "#808080"]


def _fallback_colour(cid: int) -> str:
    palette = [c.color for c in AUTOLAMELLA_CLASSES.values()] + _EXTRA_COLOURS
    return palette[cid % len(palette)]
