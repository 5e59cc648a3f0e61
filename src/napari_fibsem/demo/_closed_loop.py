"""Demo part 2: the closed alignment loop on the simulator, with a model trained on its images."""

from __future__ import annotations

from napari_fibsem.demo._segmentation import LIGHT_AUGMENT, LIGHT_DECODER, train_unet

LOOP_RECIPE = {"input_scale": 0.5, "crop_size": None, "batch_size": 4, "model_kwargs": LIGHT_DECODER,
               "augment": LIGHT_AUGMENT, "split": 0.15}  # fmt: skip
"""Whole 384x256 images at half scale: the lamella's centre is found to a pixel or two, in a third of the time."""


def closed_loop_part(result, scenes: int, epochs: int, seed: int, step, say) -> None:
    """Steps 6-9: simulator images -> a LamellaCentre model -> the loop, unsupervised and supervised."""
    from napari_fibsem.core.automation.closed_loop import closed_loop, describe, simulator_dataset

    out = result.out / "closed_loop"
    summary = simulator_dataset(out / "simulator_dataset", n=scenes, seed=100 + seed)
    step(f"6. closed loop: {summary}, with the simulator's exact labels")
    trained = train_unet(out / "simulator_dataset", out / "run", epochs, seed, say, **LOOP_RECIPE)
    result.loop_model = trained.best_path or trained.last_path
    best = (
        f"{trained.monitor} {trained.best_value:.3f}"
        if trained.best_value is not None
        else "no validation split"
    )
    step(f"7. trained the loop's U-Net for {trained.epochs_completed} epochs ({best}): {result.loop_model}")
    runs, report = closed_loop(result.loop_model, out, world_seed=seed)
    for i, run in zip("ab", runs):
        step(f"8{i}. {describe(run)}")
    result.loop_report, result.loop_runs = report, runs
    step(f"9. closed-loop report (images before/after, offsets per step, engine summary): {report}")
