"""The simulator renders the world where the geometry says: stage moves, stable/vertical moves,
beam shift, the needle and milling, checked on the ground-truth class masks.

Conventions under test (see ``core/microscope/geometry.py``): image offsets are metres from the
image centre, +x right, +y up. A stage move by +dx moves features by -dx/ps pixels; by +dy it
moves them by +dy*cos(theta)/ps pixel rows (down), theta = tilt + pre-tilt - column tilt, i.e.
0 for the electron beam and -52° for the ion beam by default (ion y foreshortened by cos 52°).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from napari_fibsem.core.microscope import (
    BeamType,
    CirclePattern,
    ImageSettings,
    MicroscopeError,
    MillingSettings,
    RectanglePattern,
    StagePosition,
    connect,
)
from napari_fibsem.core.synthetic.scene import keypoints_from_mask

W, H, HFW = 384, 256, 40e-6
PS = HFW / W
BEAMS = (BeamType.ELECTRON, BeamType.ION)


def make_sim(**overrides):
    cfg = {"simulator": {"seed": 0, "noise": 0.5}, "max_step_m": 1e-3}
    cfg.update(overrides)
    return connect(cfg)


@pytest.fixture
def sim():
    return make_sim()


def acquire(sim, beam, hfw=HFW):
    return sim.acquire_image(ImageSettings((W, H), hfw=hfw, beam=beam, autocontrast=False))


def lamella(sim, beam, hfw=HFW) -> tuple[float, float]:
    """Lamella centroid (x, y) in pixels, y down; the lamella must lie fully inside the frame."""
    acquire(sim, beam, hfw)
    mask = sim.last_mask(beam)
    rows, cols = np.nonzero(mask == 1)
    assert rows.size and rows.min() > 0 and cols.min() > 0 and rows.max() < H - 1 and cols.max() < W - 1
    return keypoints_from_mask(mask)["LamellaCentre"]


def offset_m(p: tuple[float, float], ps: float = PS) -> tuple[float, float]:
    """Pixel position -> image-plane metres from the centre, +y up."""
    return (p[0] - (W - 1) / 2) * ps, -(p[1] - (H - 1) / 2) * ps


@pytest.mark.parametrize("pre_tilt, tilt_deg", [(0.0, 0.0), (30.0, 10.0)])
@pytest.mark.parametrize("beam", BEAMS)
def test_stage_move_shifts_the_scene_by_dx_over_pixel_size(beam, pre_tilt, tilt_deg):
    sim = make_sim(pre_tilt_deg=pre_tilt)
    sim.move_stage_absolute(StagePosition(t=math.radians(tilt_deg)), confirm=True)
    theta = sim.beam_angle(beam)
    expected_theta = math.radians(tilt_deg + pre_tilt - (0.0 if beam is BeamType.ELECTRON else 52.0))
    assert theta == pytest.approx(expected_theta)
    x0, y0 = lamella(sim, beam)
    dx, dy = 3.1e-6, -2.3e-6
    sim.move_stage_relative(dx, dy)
    x1, y1 = lamella(sim, beam)
    assert x1 - x0 == pytest.approx(-dx / PS, abs=1.0)
    assert y1 - y0 == pytest.approx(dy * math.cos(theta) / PS, abs=1.0)  # ion: foreshortened


def test_ion_view_is_foreshortened_by_cos_52(sim):
    heights = {}
    for beam in BEAMS:
        acquire(sim, beam)
        rows = np.nonzero((sim.last_mask(beam) == 1).any(axis=1))[0]
        heights[beam] = rows.max() - rows.min() + 1
    assert heights[BeamType.ION] / heights[BeamType.ELECTRON] == pytest.approx(math.cos(math.radians(52)), abs=0.05)


@pytest.mark.parametrize("beam", BEAMS)
def test_stable_move_centres_an_off_centre_feature(sim, beam):
    sim.move_stage_relative(4.2e-6, -2.7e-6)
    off = offset_m(lamella(sim, beam))
    assert math.hypot(*off) > 2e-6
    sim.stable_move(*off, beam)
    x, y = lamella(sim, beam)
    assert x == pytest.approx((W - 1) / 2, abs=1.0)
    assert y == pytest.approx((H - 1) / 2, abs=1.0)


@pytest.mark.parametrize("beam", BEAMS)
def test_vertical_move_moves_only_along_this_beams_vertical(sim, beam):
    other = BeamType.ION if beam is BeamType.ELECTRON else BeamType.ELECTRON
    sim.move_stage_relative(1.5e-6, -3.0e-6)
    here, there = lamella(sim, beam), lamella(sim, other)
    dy = offset_m(here)[1]
    before = sim.get_stage_position()
    after = sim.vertical_move(dy, beam)
    assert after.x == before.x
    x, y = lamella(sim, beam)
    assert y == pytest.approx((H - 1) / 2, abs=1.0)  # onto the centre line
    assert x == pytest.approx(here[0], abs=1.0)  # no horizontal motion
    assert lamella(sim, other) == pytest.approx(there, abs=1.0)  # the other beam does not see it move


@pytest.mark.parametrize("beam", BEAMS)
def test_beam_shift_centres_a_feature_without_moving_the_stage(sim, beam):
    sim.move_stage_relative(2e-6, 1.5e-6)
    pos = sim.get_stage_position()
    off = offset_m(lamella(sim, beam))
    sim.shift_beam(*off, beam)
    assert lamella(sim, beam) == pytest.approx(((W - 1) / 2, (H - 1) / 2), abs=1.0)
    assert sim.get_stage_position() == pos


def test_field_width_scales_the_scene(sim):
    acquire(sim, "electron")
    a = np.count_nonzero(sim.last_mask("electron") == 1)
    acquire(sim, "electron", hfw=HFW * 1.5)
    b = np.count_nonzero(sim.last_mask("electron") == 1)
    assert a / b == pytest.approx(1.5**2, rel=0.1)


def test_acquisition_metadata_and_determinism(sim, tmp_path):
    path = tmp_path / "e.tif"
    img = sim.acquire_image(ImageSettings((W, H), hfw=HFW, beam="ion", autocontrast=False, save_path=str(path)))
    assert img.data.shape == (H, W) and img.data.dtype == np.uint8
    m = img.metadata
    assert m.pixel_size == pytest.approx(PS) and m.beam_type == "ion" and m.timestamp
    assert m.extra["microscope_state"]["stage"]["x"] == 0.0
    assert m.extra["microscope_state"]["ion"]["hfw"] == pytest.approx(HFW)
    assert len(m.extra["system"]["fingerprint"]) == 16
    from napari_fibsem.core.io.imageio import read_image

    back = read_image(path)
    np.testing.assert_array_equal(back.data, img.data)
    assert back.metadata.pixel_size == pytest.approx(PS)
    assert sim.last_image("ion") is img
    other = make_sim()
    np.testing.assert_array_equal(acquire(other, "ion").data, img.data)


def test_needle_insert_move_retract(sim):
    assert sim.get_manipulator_position().inserted is False
    acquire(sim, "electron")
    assert not (sim.last_mask("electron") == 2).any()
    with pytest.raises(MicroscopeError, match="retracted"):
        sim.move_manipulator_relative(dx=1e-6)
    sim.insert_manipulator()
    side = sim.needle.side
    acquire(sim, "electron")
    tip0 = keypoints_from_mask(sim.last_mask("electron"), side)["NeedleTip"]
    sim.move_manipulator_relative(dx=-1.5e-6, dy=1e-6)
    acquire(sim, "electron")
    tip1 = keypoints_from_mask(sim.last_mask("electron"), side)["NeedleTip"]
    assert tip1[0] - tip0[0] == pytest.approx(-1.5e-6 / PS, abs=1.5)
    assert tip1[1] - tip0[1] == pytest.approx(-1e-6 / PS, abs=1.5)  # +y up
    sim.retract_manipulator()
    acquire(sim, "electron")
    assert not (sim.last_mask("electron") == 2).any()


def _ion_region(img, pattern, shrink=2):
    """Pixel window of a rectangle pattern in an ion image taken with the same stage/shift."""
    cx, cy = (W - 1) / 2 + pattern.centre_x / PS, (H - 1) / 2 - pattern.centre_y / PS
    hw, hh = pattern.width / 2 / PS - shrink, pattern.height / 2 / PS - shrink
    return img[round(cy - hh) : round(cy + hh), round(cx - hw) : round(cx + hw)]


def test_milling_removes_material_where_the_pattern_was(sim):
    sim.setup_milling(MillingSettings(current=1e-9, hfw=HFW))
    assert sim.get_beam_settings("ion").current == 1e-9
    before = acquire(sim, "ion").data.astype(float)
    lam_before = np.count_nonzero(sim.last_mask("ion") == 1)
    empty = RectanglePattern(-12e-6, -8e-6, 6e-6, 2.5e-6, 1e-6)  # bare substrate, lower left
    top = lamella(sim, "ion")
    rows = np.nonzero((sim.last_mask("ion") == 1).any(axis=1))[0]
    lam_top_m = -(rows.min() - (H - 1) / 2) * PS
    cut = RectanglePattern(offset_m(top)[0], lam_top_m, 5e-6, 1.2e-6, 1e-6)  # across the lamella's top edge
    seen = []
    result = sim.run_milling([empty, cut], on_progress=seen.append)
    assert result.completed and result.steps_done == result.steps_total == 20
    assert [p.step for p in seen] == list(range(1, 21)) and seen[-1].fraction == 1.0
    after = acquire(sim, "ion").data.astype(float)
    assert _ion_region(after, empty).mean() < _ion_region(before, empty).mean() - 40  # dark trench floor
    far = (slice(0, 40), slice(W - 80, W))  # upper right: untouched
    assert abs(after[far].mean() - before[far].mean()) < 10
    assert np.count_nonzero(sim.last_mask("ion") == 1) < lam_before  # the lamella was trimmed
    est = sim.estimate_milling_time([empty, cut])
    assert est == pytest.approx((empty.area + cut.area) * 1e-6 / (1e-9 * 2.7e-10))


def test_stopping_milling_midway_leaves_a_partial_trench_and_a_consistent_state(sim):
    sim.setup_milling(MillingSettings(hfw=HFW))
    pattern = RectanglePattern(-12e-6, -8e-6, 6e-6, 4e-6, 1e-6)
    before = acquire(sim, "ion").data.astype(float)
    stop = threading.Event()

    def on_progress(p):
        if p.step == 3:
            stop.set()

    result = sim.run_milling([pattern], on_progress=on_progress, stop=stop)
    assert not result.completed and result.steps_done == 3 and result.steps_total == 10
    after = acquire(sim, "ion").data.astype(float)
    region_b, region_a = _ion_region(before, pattern), _ion_region(after, pattern)
    n = region_a.shape[0]
    assert region_a[: n // 5].mean() < region_b[: n // 5].mean() - 40  # the top band is milled
    assert abs(region_a[-n // 3 :].mean() - region_b[-n // 3 :].mean()) < 12  # the rest is not
    assert sim.get_stage_position() == StagePosition() and sim.state_known
    assert sim.run_milling([pattern]).completed  # ready for the next run


def test_milling_error_in_callback_stops_and_reports(sim):
    def boom(p):
        raise ValueError("widget went away")

    with pytest.raises(MicroscopeError, match="widget went away"):
        sim.run_milling([CirclePattern(0, 0, 1e-6, 1e-7)], on_progress=boom)
    assert sim._job is None and sim.connected
