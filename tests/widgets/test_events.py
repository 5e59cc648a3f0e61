"""The event detection widget on a real viewer: bundle -> threaded run -> points and score layers, CSV, Stop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_fibsem.core.events.model import HeatmapUNet, save_event_bundle
from napari_fibsem.core.events.predict import read_events_csv
from napari_fibsem.core.events.settings import EventSettings
from napari_fibsem.core.events.synthetic_movie import synthetic_movie
from napari_fibsem.widgets.events import EventsWidget

pytestmark = pytest.mark.gui

BUNDLE_THRESHOLD = 0.62


def bright_spot_bundle(path: Path, tmp_path: Path) -> Path:
    """A tiny U-Net wired by hand to score bright spots of the centre frame (a stand-in for a trained one).

    Only the top level is used: the first block copies the centre frame into channel 0, the last
    decoder block passes that skip channel on, and the head maps it to a steep logit.
    """
    net = HeatmapUNet(3, nb_filters=4, depth=2)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        enc, dec = net.encoder[0], net.decoder[-1]
        enc[0].weight[0, 1, 1, 1] = 1.0  # centre frame of three
        enc[3].weight[0, 0, 1, 1] = 1.0
        dec[0].weight[0, 4, 1, 1] = 1.0  # the skip half of the concatenation starts at channel 4
        dec[3].weight[0, 0, 1, 1] = 1.0
        net.head.weight[0, 0] = 25.0
        net.head.bias[0] = -25.0 * 0.55
    settings = EventSettings(training_set=tmp_path, n_frames=3, nb_filters=4, depth=2)
    return save_event_bundle(path, net, settings, BUNDLE_THRESHOLD, {"note": "hand-wired"})


@pytest.fixture
def setup(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    movie = synthetic_movie(seed=4, frames=10, size=(96, 128), blobs=6, splits=2, blinks=1)
    viewer.add_image(movie.stack, name="cells")
    viewer.add_image(np.zeros((32, 32)), name="not a movie")
    w = EventsWidget(viewer)
    viewer.window.add_dock_widget(w, name="Detect events")
    bundle = bright_spot_bundle(tmp_path / "best.pt", tmp_path)
    yield viewer, w, movie, bundle
    if w._busy:
        w.stop()
        qtbot.waitUntil(lambda: not w._busy, timeout=30_000)


def test_detect_events_end_to_end(setup, qtbot, tmp_path):
    viewer, w, movie, bundle = setup
    assert [w.layer_combo.itemText(i) for i in range(w.layer_combo.count())] == [
        "cells"
    ]  # 2D layers left out
    assert not w.run_button.isEnabled()  # no model yet
    w.set_model(bundle)
    qtbot.waitUntil(lambda: w.model is not None, timeout=30_000)
    assert w.threshold.value() == pytest.approx(BUNDLE_THRESHOLD)  # the bundle's threshold is the default
    frames = []
    w._relay.progressed.connect(lambda d, t: frames.append((d, t)))
    assert w.run()
    qtbot.waitUntil(lambda: not w._busy, timeout=60_000)
    assert w.result is not None, w.status.text()
    assert frames[-1] == (10, 10)

    points = viewer.layers["cells events"]
    assert points.ndim == 3 and len(points.data) == len(w.result.events) >= 3
    np.testing.assert_allclose(points.data, w.result.points())
    np.testing.assert_allclose(points.features["score"], [e.score for e in w.result.events], rtol=1e-6)
    assert all(e.score >= BUNDLE_THRESHOLD for e in w.result.events)
    # the wired net scores bright blobs: every event sits on one (well above the background)
    for e in w.result.events:
        assert movie.stack[e.frame, round(e.y), round(e.x)] > np.percentile(movie.stack[e.frame], 95)
    scores = viewer.layers["cells scores"]
    assert scores.data.shape == movie.stack.shape and scores.blending == "additive"

    viewer.window._qt_window.resize(1280, 760)
    viewer.reset_view()
    viewer.dims.set_point(0, w.result.events[0].frame)
    shot = viewer.screenshot(canvas_only=False)  # the first grab can come back before the dock is drawn
    shot = viewer.screenshot(canvas_only=False)
    from imageio.v3 import imwrite

    imwrite("/tmp/events_widget.png", shot)

    out = w.save_csv(tmp_path / "cells_events.csv")
    back = read_events_csv(out)
    assert [(e.frame, e.y, e.x) for e in back] == [
        (e.frame, round(e.y, 3), round(e.x, 3)) for e in w.result.events
    ]

    # a second run at a higher threshold replaces the layers instead of adding more
    w.threshold.setValue(0.9)
    assert w.run()
    qtbot.waitUntil(lambda: not w._busy, timeout=60_000)
    assert [lay.name for lay in viewer.layers].count("cells events") == 1
    assert len(viewer.layers["cells events"].data) == len(w.result.events) <= len(back)


def test_stop_ends_the_run_without_results(setup, qtbot):
    viewer, w, movie, bundle = setup
    w.set_model(bundle)
    qtbot.waitUntil(lambda: w.model is not None, timeout=30_000)
    w.tile.setValue(64)  # several tiles per frame: progress comes every frame or two
    w._relay.progressed.connect(lambda d, t: w.stop())  # press Stop as soon as the first frames are done
    assert w.run()
    qtbot.waitUntil(lambda: not w._busy, timeout=60_000)
    assert w.result is None and "stopped after" in w.status.text()
    assert "cells events" not in viewer.layers


def test_a_segmentation_bundle_is_refused_with_a_message(setup, qtbot, tmp_path):
    viewer, w, movie, bundle = setup
    bad = tmp_path / "not_a_bundle.pt"
    bad.write_bytes(b"not a checkpoint")
    w.set_model(bad)
    qtbot.waitUntil(lambda: not w._busy, timeout=30_000)
    assert w.model is None and w.status.text().startswith("failed:")
