"""Demo part 1: a synthetic dataset, a U-Net trained on it in about three minutes, scored on unseen scenes.

The recipe is ``benchmarks/train_quality.py``'s (0.907 on unseen scenes in ~17 min), cut to fit
a demo: the network sees scenes at a quarter of their size (128x192 for 512x768; the bundle stores
the scale and ``predict`` returns full-size masks) in 128 px crops centred on rare classes more
often, rare classes weigh more in the loss, the decoder is half as wide, augmentation is light and
the learning rate higher. Mean foreground IoU on unseen scenes over seeds 0-2: see the README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_fibsem.core.data.dataset import discover, validate
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.synthetic.dataset import write_dataset

NETWORK_SIDE = 192
"""Long side (px) of the image the network sees: the input scale is chosen to give this."""
LIGHT_DECODER = {"decoder_channels": [128, 64, 32, 16, 16]}
"""Half smp's default widths: steps ~40% cheaper in a micro-benchmark; the IoU stayed within
run-to-run noise (one seed, full augmentation: 0.58 with the default decoder, 0.55 with this)."""
LIGHT_AUGMENT = {"rotate": 0, "scale": [1, 1], "autocontrast": 0, "equalize": 0, "blur": 0}
"""Flips, brightness and contrast only: in a short run (200 steps, one seed) the full EM
augmentation held the IoU on unseen scenes at 0.55 where this reached 0.82."""
RECIPE: dict[str, Any] = {
    "encoder": "resnet18",
    "model_kwargs": LIGHT_DECODER,
    "batch_size": 8,
    "lr": 2e-3,
    "class_weights": [1, 1, 2, 1, 4, 2],  # the thin needle and the rare adaptor and block count more ...
    "loss": {"ce": 1.0, "dice": 1.0},
    "scheduler": "cosine",
    "augment": {
        **LIGHT_AUGMENT,
        "foreground": 0.5,
        "foreground_weights": [0, 1, 1, 1, 6, 3],
    },  # ... and centre more crops
}
CROP_SHARE = 2 / 3
"""Training crops are squares of this share of the scaled scene's long side (128 px of 128x192):
cheaper steps than whole scenes, and rare classes are centred in them more often."""


def input_scale(size: tuple[int, int]) -> float:
    """The scale at which a ``size`` scene has a long side of :data:`NETWORK_SIDE` (never above 1)."""
    return min(1.0, NETWORK_SIDE / max(size))


def train_unet(data: Path, save: Path, epochs: int, seed: int, say: Callable[[str], None], **settings: Any):
    """A resnet18 U-Net from random weights with the trainer of ``napari-fibsem train``.

    ``settings`` are training-config keys (``split``, ``crop_size``, ``input_scale`` ...) over
    these defaults.
    """
    from napari_fibsem.core.training.config_file import parse_config
    from napari_fibsem.core.training.loop import Trainer

    config = parse_config(
        {
            "data_paths": [str(data)],
            "save_path": str(save),
            "encoder": "resnet18",
            "epochs": epochs,
            "batch_size": 4,
            "lr": 2e-3,
            "device": "auto",
            "num_workers": 0,
            "logger": ["console", "csv", "tensorboard"],
            "seed": seed,
            "note": "napari-fibsem demo",
            **settings,
        },
        source="demo",
    )
    return Trainer(config, write=lambda line: say(f"   {line}")).run()


def segmentation_part(
    result, n: int, size: tuple[int, int], epochs: int, seed: int, unseen: int, step, say
) -> None:
    """Steps 1-5: dataset, check, train, predict unseen scenes, score them."""
    summary = write_dataset(result.dataset, n=n, size=size, seed=seed, beam="mixed")
    step(f"1. synthetic dataset: {summary}")
    index = discover(result.dataset)
    class_map = ClassMap.for_folder(result.dataset)
    validate(index, class_map)
    step(f"2. dataset check: {index.summary()}; labels valid against {class_map.names}")
    if epochs <= 0:
        return
    out = result.out
    scale = input_scale(size)
    crop = min(round(CROP_SHARE * NETWORK_SIDE), round(scale * min(size)))
    # all scenes train (the unseen ones judge); bundles only at the end (writing ~150 MB each epoch costs ~15%)
    trained = train_unet(result.dataset, out / "run", epochs, seed, say, split=0.0, val_every=epochs,
                         input_scale=scale, crop_size=crop, **RECIPE)  # fmt: skip
    result.model = trained.best_path or trained.last_path
    step(f"3. trained U-Net resnet18 for {trained.epochs_completed} epochs from random weights on all {n} scenes "
         f"({trained.global_step} steps of {RECIPE['batch_size']} crops of {crop} px at {scale:g}x scale): "
         f"{result.model}; metrics.csv and tensorboard/ beside it")  # fmt: skip

    from napari_fibsem.core.evaluation.folder import evaluate_folder
    from napari_fibsem.core.models import load_model
    from napari_fibsem.core.models.inference import predict_folder

    write_dataset(result.test, n=unseen, size=size, seed=seed + 10_000, beam="mixed")
    model = load_model(result.model)
    predicted = predict_folder(model, result.test, out_dir=out / "unseen_predicted")
    step(f"4. predicted {unseen} unseen scenes (another seed, true labels in {result.test.name}/labels): "
         f"{predicted} to {out / 'unseen_predicted'}")  # fmt: skip
    metrics, per_image = evaluate_folder(model, result.test)
    result.mean_fg_iou = metrics.mean_fg_iou
    ious = ", ".join(f"{k} {v:.2f}" for k, v in metrics.iou.items() if v is not None and k != "background")
    step(f"5. on the unseen scenes: mean foreground IoU {metrics.mean_fg_iou or 0:.2f} ({ious}); "
         f"{per_image:.2f} s per image. IoU: overlap of the predicted and true masks of a class (1 = identical, "
         f"above 0.5 = the object is found and outlined roughly). Longer training does better: "
         f"benchmarks/train_quality.py reaches 0.91")  # fmt: skip
