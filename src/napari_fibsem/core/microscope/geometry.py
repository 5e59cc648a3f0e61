"""Beam/stage geometry shared by the base class and the simulator (pure functions, SI units).

The model. Stage x, y lie in the sample surface (the stage frame tilts with the sample), z is
along its normal. ``StagePosition`` names the sample point seen at the image centre, so moving
the stage by +dx makes a feature at the centre appear ``dx / pixel_size`` pixels to the *left*.
Each beam looks at the surface at an angle

    theta = stage tilt + pre-tilt * cos(rotation - reference rotation) - column tilt

(the pre-tilt of the shuttle flips sign when the stage is rotated by 180°). A sample point
(X, Y, Z) appears at image-plane metres (+x right, +y up, origin the image centre)

    u = X - stage.x - shift.x
    v = (Y - stage.y) cos(theta) + (Z - stage.z) sin(theta) - shift.y

so a beam at an angle sees sample y foreshortened by cos(theta) (default ion column 52°:
cos 52° = 0.616) and height changes as vertical image motion. A beam shift moves the view like a
stage move in the image plane, without foreshortening. Stage rotation is not rendered.
"""

from __future__ import annotations

import math

from napari_fibsem.core.microscope.errors import MicroscopeError
from napari_fibsem.core.microscope.structures import BeamType, StagePosition


def beam_angle(
    stage: StagePosition, column_tilt: float, pre_tilt: float = 0.0, reference_rotation: float = 0.0
) -> float:
    """Angle (rad) between the sample normal and a beam whose column is tilted by ``column_tilt``."""
    return stage.t + pre_tilt * math.cos(stage.r - reference_rotation) - column_tilt


def sample_to_image(
    x: float, y: float, z: float, stage: StagePosition, theta: float, shift: tuple[float, float] = (0.0, 0.0)
) -> tuple[float, float]:
    """Image-plane metres (+x right, +y up, from the centre) of the sample point (x, y, z)."""
    u = x - stage.x - shift[0]
    v = (y - stage.y) * math.cos(theta) + (z - stage.z) * math.sin(theta) - shift[1]
    return u, v


def image_to_sample(
    u: float, v: float, stage: StagePosition, theta: float, shift: tuple[float, float] = (0.0, 0.0), z: float = 0.0
) -> tuple[float, float]:
    """The sample (x, y) at height ``z`` seen at image-plane metres (u, v)."""
    c = _cos(theta)
    x = u + stage.x + shift[0]
    y = stage.y + (v + shift[1] - (z - stage.z) * math.sin(theta)) / c
    return x, y


def stable_move_delta(dx: float, dy: float, theta: float) -> tuple[float, float, float]:
    """Stage (dx, dy, dz) that brings the feature at image offset (dx, dy) to the centre.

    The move stays in the sample plane (z unchanged, so the working distance to the surface is
    kept): the image y offset is undone by dy / cos(theta) along the tilted stage y.
    """
    return dx, dy / _cos(theta), 0.0


def vertical_move_delta(dy: float, theta: float, theta_other: float) -> tuple[float, float, float]:
    """Stage (0, dy, dz) that moves the feature at vertical offset ``dy`` in this beam onto the
    centre line while its position in the other beam does not change (eucentric correction)."""
    det = math.sin(theta_other - theta)
    if abs(det) < 1e-3:
        raise MicroscopeError(
            "vertical_move needs the two beams at different angles to the sample; they coincide here"
        )
    return 0.0, dy * math.sin(theta_other) / det, -dy * math.cos(theta_other) / det


def other_beam(beam: BeamType) -> BeamType:
    return BeamType.ION if beam is BeamType.ELECTRON else BeamType.ELECTRON


def _cos(theta: float) -> float:
    c = math.cos(theta)
    if c < 1e-3:
        raise MicroscopeError(
            f"the beam looks at the sample at {math.degrees(theta):.1f}° to its normal; the sample plane is "
            "edge-on or facing away, so image offsets cannot be turned into stage moves"
        )
    return c
