"""Data-parallel training: two gloo processes on the CPU train one model and only rank 0 writes."""

from __future__ import annotations

from pathlib import Path

import torch

from napari_fibsem.core.models import load_model, read_bundle
from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.core.training import TrainingConfig, train_distributed

TINY = dict(encoder="tu-resnet10t", model_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]})


def test_two_gloo_processes_train_and_write_one_run(tmp_path):
    data = tmp_path / "ds"
    write_dataset(data, n=5, size=(64, 96), seed=0)
    save = tmp_path / "run"
    cfg = TrainingConfig(**TINY, data_paths=[data], save_path=save, epochs=2, batch_size=2, crop_size=48, split=0.2,
                         num_workers=0, logger=["csv", "console"], device="cpu", seed=1)  # fmt: skip
    result = train_distributed(cfg, nprocs=2)

    # 4 training images, 2 processes, batches of 2: one step per epoch each (one process alone takes two)
    assert result.global_step == result.total_steps == 2 and result.epochs_completed == 2
    # rank 0 alone wrote: one last bundle, one best bundle, one state, one CSV; no second copy or temp file
    assert sorted(p.name for p in save.iterdir()) == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "last.state.pt",
        "metrics.csv",
    ]
    assert len((save / "metrics.csv").read_text().splitlines()) == 1 + 2
    meta, weights = read_bundle(save / "last.pt")
    assert meta.metrics["global_step"] == 2 and not any(
        k.startswith("module.") for k in weights
    )  # not DDP-wrapped
    model = load_model(save / "last.pt", device="cpu")
    assert model.predict(torch.zeros(64, 96, dtype=torch.uint8).numpy()).mask.shape == (64, 96)
    assert Path(result.best_path).is_file() and result.metrics["val_loss"] is not None
