"""What a synthetic scene contains: ``SceneConfig`` and the limits it checks.

Its own module so the layout drawer (``layout``) and the scene generator (``scene``) can both
read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PIXEL_SIZE_RANGE = (10e-9, 200e-9)  # metres per pixel, drawn log-uniformly when not given
MIN_SIZE = 48  # below this the objects cannot keep their gaps


@dataclass(frozen=True)
class SceneConfig:
    """What a scene contains and how strong its artefacts are (factors of 1 are typical)."""

    size: tuple[int, int] = (1024, 1536)  # (height, width)
    beam: Literal["electron", "ion"] = "ion"  # ion: curtaining stripes, foreshortened lamella
    pixel_size: float | None = None  # metres/pixel; None: drawn from PIXEL_SIZE_RANGE
    lamella: bool = True
    trench: bool = True  # the lamella sits in a milled trench (dark floor, textured walls)
    needle: bool = True
    needle_side: Literal["left", "right", "top", "random"] = "random"
    landing_post: bool = False
    copper_adaptor: bool = False
    volume_block: bool = False
    distractors: int = 0  # ice/contamination specks, labelled background
    noise: float = 1.0  # scales Poisson + Gaussian noise; 0: clean
    blur: float = 1.0  # scales defocus blur
    charging: float = 1.0  # scales charging halos and brightness gradients
    curtaining: float | None = None  # None: on for the ion beam, off for the electron beam

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < MIN_SIZE:
            raise ValueError(f"size must be (height, width), each >= {MIN_SIZE}; got {self.size}")
        object.__setattr__(self, "size", size)
        if self.beam not in ("electron", "ion"):
            raise ValueError(f"beam must be 'electron' or 'ion', not {self.beam!r}")
        if self.needle_side not in ("left", "right", "top", "random"):
            raise ValueError(f"needle_side must be left, right, top or random, not {self.needle_side!r}")
        if self.pixel_size is not None and not self.pixel_size > 0:
            raise ValueError(f"pixel_size must be positive metres per pixel, not {self.pixel_size}")
        for name in ("noise", "blur", "charging", "curtaining", "distractors"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, not {value}")

    @property
    def curtaining_strength(self) -> float:
        if self.curtaining is None:
            return 1.0 if self.beam == "ion" else 0.0
        return float(self.curtaining)
