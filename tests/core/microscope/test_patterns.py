"""Shapes drawn on the ion image -> milling patterns in image metres (+y up), and their words."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fibsem.core.microscope import CirclePattern, LinePattern, RectanglePattern
from napari_fibsem.core.microscope.patterns import (
    PatternError,
    describe_patterns,
    pixels_to_metres,
    shapes_to_patterns,
)

SHAPE = (101, 201)  # rows, cols: the centre pixel is (50, 100)
PX = 1e-7  # 100 nm per pixel


def test_pixel_centre_is_the_origin_and_up_is_positive_y():
    xy = pixels_to_metres(np.array([[50, 100], [40, 130]]), SHAPE, PX)
    np.testing.assert_allclose(xy, [[0.0, 0.0], [30 * PX, 10 * PX]], atol=1e-15)


def test_rectangle_line_and_circle_become_patterns_at_the_right_place():
    rectangle = np.array([[40, 90], [40, 110], [60, 110], [60, 90]])  # 20 px wide and high, centred
    line = np.array([[50, 100], [50, 150]])
    circle = np.array([[30, 130], [30, 150], [50, 150], [50, 130]])  # bounding box of a 20 px circle
    patterns = shapes_to_patterns([rectangle, line, circle], ["rectangle", "line", "ellipse"], SHAPE, PX, 1e-6)
    rect, seg, disc = patterns
    assert isinstance(rect, RectanglePattern) and isinstance(seg, LinePattern) and isinstance(disc, CirclePattern)
    assert rect.centre_x == pytest.approx(0.0, abs=1e-15) and rect.centre_y == pytest.approx(0.0, abs=1e-15)
    assert rect.width == pytest.approx(20 * PX) and rect.height == pytest.approx(20 * PX) and rect.depth == 1e-6
    assert (seg.start_x, seg.end_x) == pytest.approx((0.0, 50 * PX)) and seg.start_y == pytest.approx(0.0, abs=1e-15)
    assert (disc.centre_x, disc.centre_y, disc.radius) == pytest.approx((40 * PX, 10 * PX, 10 * PX))
    assert "rectangle" in describe_patterns(patterns)


def test_a_shape_outside_the_image_names_itself_and_nothing_is_converted():
    inside = np.array([[40, 90], [40, 110], [60, 110], [60, 90]])
    outside = np.array([[90, 190], [90, 230], [99, 230], [99, 190]])
    with pytest.raises(PatternError, match=r"shape 2 \(rectangle\) reaches outside the ion image \(201 x 101 px\)"):
        shapes_to_patterns([inside, outside], ["rectangle", "rectangle"], SHAPE, PX, 1e-6)
