"""Where the demo ends with a display: Getting started, and labelling on its dataset with its model."""

from __future__ import annotations

import pytest

from napari_fibsem._demo_viewer import open_demo
from napari_fibsem.core.synthetic.dataset import write_dataset

pytestmark = pytest.mark.gui


def test_demo_viewer_is_ready_to_propose(make_napari_viewer, tmp_path):
    from napari_fibsem.core.models import create_model, save_bundle

    dataset = tmp_path / "dataset"
    write_dataset(dataset, n=2, size=(64, 96), seed=0)
    model = save_bundle(tmp_path / "best.pt", create_model("Unet", "resnet18", device="cpu", encoder_depth=3,
                                                           decoder_channels=(32, 16, 8)))  # fmt: skip
    viewer = open_demo(dataset, model, viewer=make_napari_viewer())
    docks = viewer.window.dock_widgets
    assert {"Getting started (napari-fibsem)", "Label segmentation (napari-fibsem)"} <= set(docks)
    labelling = docks["Label segmentation (napari-fibsem)"]
    assert labelling.folder.folder == dataset and labelling.index == 0
    assert labelling.proposals.checkpoint == model and labelling.proposals.propose_button.isEnabled()
