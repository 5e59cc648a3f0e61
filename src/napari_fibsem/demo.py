"""The end-to-end demo: what the README's main command runs.

Headless (no Qt import) so it runs in CI and on servers: a synthetic dataset, checked as a
user's would be; a short training run from random weights; the trained model predicting scenes
it has never seen (labels written beside them, as ``napari-fibsem predict`` does) and scored
against their true labels. Later steps (keypoint evaluation, the supervised closed loop) append
themselves to :func:`run_demo` as they land.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from napari_fibsem.core.classes import ClassMap
from napari_fibsem.core.dataset import discover, validate
from napari_fibsem.core.synthetic_dataset import write_dataset

MARKER = ".napari-fibsem-demo"


@dataclass
class DemoResult:
    out: Path
    dataset: Path
    test: Path
    lines: list[str] = field(default_factory=list)
    model: Path | None = None
    loop_model: Path | None = None
    loop_report: Path | None = None
    loop_runs: list = field(default_factory=list)  # closed_loop.LoopRun, unsupervised then supervised

    def report(self) -> str:
        return "\n".join([f"demo outputs in {self.out.resolve()}", *self.lines])


def _fresh_folder(out: Path) -> None:
    if out.exists():
        if not (out / MARKER).exists():
            raise ValueError(f"{out}: exists and is not a previous demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).touch()


def run_demo(
    out: str | Path,
    n: int = 12,
    size: tuple[int, int] = (1024, 1536),
    seed: int = 0,
    epochs: int = 6,
    write: Callable[[str], None] | None = None,
    loop_scenes: int = 48,
    loop_epochs: int = 5,
) -> DemoResult:
    """Dataset → check → train (``epochs``; 0 skips training) → predict unseen scenes → score →
    the closed alignment loop with a model trained on simulator images (``loop_epochs``; 0 skips it).

    ``write`` receives progress lines as the steps run (the CLI prints them).
    """
    say = write or (lambda line: None)
    out = Path(out)
    _fresh_folder(out)
    result = DemoResult(out, out / "dataset", out / "unseen")

    def step(line: str) -> None:
        result.lines.append(line)
        say(line)

    summary = write_dataset(result.dataset, n=n, size=size, seed=seed, beam="mixed")
    step(f"1. synthetic dataset: {summary}")
    index = discover(result.dataset)
    class_map = ClassMap.for_folder(result.dataset)
    validate(index, class_map)
    step(f"2. dataset check: {index.summary()}; labels valid against {class_map.names}")
    if epochs > 0:
        _segmentation(result, n, size, epochs, seed, step, say)
    if loop_epochs > 0:
        _closed_loop(result, loop_scenes, loop_epochs, seed, step, say)
    return result


def _segmentation(
    result: DemoResult, n: int, size: tuple[int, int], epochs: int, seed: int, step, say
) -> None:
    """Train on the synthetic dataset, predict unseen scenes, score them (steps 3-5)."""
    out = result.out

    trained = _train(result.dataset, out / "run", epochs, min(256, *size), 0.2 if n >= 5 else 0.0, seed, say)
    result.model = trained.best_path or trained.last_path
    step(f"3. trained U-Net resnet18 for {trained.epochs_completed} epochs from random weights ({_best(trained)}): "
         f"{result.model}; metrics.csv and tensorboard/ beside it")  # fmt: skip

    from napari_fibsem.core.inference import evaluate_folder, predict_folder
    from napari_fibsem.core.models import load_model

    n_unseen = max(2, n // 4)
    write_dataset(result.test, n=n_unseen, size=size, seed=seed + 10_000, beam="mixed")
    model = load_model(result.model)
    predicted = predict_folder(model, result.test, out_dir=out / "unseen_predicted")
    step(f"4. predicted {n_unseen} unseen scenes: {predicted} to {out / 'unseen_predicted'}")
    metrics, per_image = evaluate_folder(model, result.test)
    ious = ", ".join(f"{k} {v:.2f}" for k, v in metrics.iou.items() if v is not None and k != "background")
    step(f"5. on the unseen scenes: mean foreground IoU {metrics.mean_fg_iou or 0:.3f} ({ious}); "
         f"{per_image:.2f} s per image. A short demo run: train for longer (napari-fibsem train) for real use")  # fmt: skip


def _train(
    data: Path, save: Path, epochs: int, crop: int, split: float, seed: int, say: Callable[[str], None]
):
    """A resnet18 U-Net from random weights with the trainer of ``napari-fibsem train``."""
    from napari_fibsem.core.training.config_file import parse_config
    from napari_fibsem.core.training.loop import Trainer

    config = parse_config(
        {
            "data_paths": [str(data)],
            "save_path": str(save),
            "encoder": "resnet18",
            "epochs": epochs,
            "split": split,
            "batch_size": 4,
            "lr": 2e-3,
            "crop_size": crop,
            "device": "auto",
            "num_workers": 0,
            "logger": ["console", "csv", "tensorboard"],
            "seed": seed,
            "note": "napari-fibsem demo",
        },
        source="demo",
    )
    return Trainer(config, write=lambda line: say(f"   {line}")).run()


def _best(trained) -> str:
    return (
        f"{trained.monitor} {trained.best_value:.3f}"
        if trained.best_value is not None
        else "no validation split"
    )


def _closed_loop(result: DemoResult, scenes: int, epochs: int, seed: int, step, say) -> None:
    """Simulator images -> a LamellaCentre model -> the alignment loop, unsupervised and supervised."""
    from napari_fibsem.core.closed_loop import LOOP_SETTINGS, closed_loop, describe, simulator_dataset

    out = result.out / "closed_loop"
    summary = simulator_dataset(out / "simulator_dataset", n=scenes, seed=100 + seed)
    step(f"6. closed loop: {summary}, with the simulator's exact labels")
    w, h = LOOP_SETTINGS.resolution
    trained = _train(out / "simulator_dataset", out / "run", epochs, min(256, w, h), 0.15, seed, say)
    result.loop_model = trained.best_path or trained.last_path
    step(
        f"7. trained the loop's U-Net for {trained.epochs_completed} epochs ({_best(trained)}): {result.loop_model}"
    )
    runs, report = closed_loop(result.loop_model, out, world_seed=seed)
    for i, run in zip("ab", runs):
        step(f"8{i}. {describe(run)}")
    result.loop_report, result.loop_runs = report, runs
    step(f"9. closed-loop report (images before/after, offsets per step, engine summary): {report}")
