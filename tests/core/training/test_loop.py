"""The trainer on synthetic scenes: it learns, resumes exactly, cancels, and refuses bad input clearly.

Networks are tiny (timm resnet10t encoder, depth 3, decoder 32/16/8: 0.4 M parameters) so a step on
four 64x96 images takes milliseconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_fibsem.core.data.dataset import DatasetError
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import write_labels
from napari_fibsem.core.models import create_model, load_model, read_bundle
from napari_fibsem.core.synthetic.dataset import write_dataset
from napari_fibsem.core.training import (
    Progress,
    Trainer,
    TrainingConfig,
    TrainingSetupError,
    compute_metrics,
    train,
)
from napari_fibsem.core.training.metrics import confusion_matrix
from napari_fibsem.core.training.prepare import cpu_has_native_bfloat16

TINY = dict(encoder="tu-resnet10t", model_kwargs={"encoder_depth": 3, "decoder_channels": [32, 16, 8]})


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Path:
    """Four synthetic 64x96 scenes (every AutoLamella class appears in at least one)."""
    folder = tmp_path_factory.mktemp("four") / "ds"
    write_dataset(folder, n=4, size=(64, 96), seed=0)
    return folder


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("five") / "ds"
    write_dataset(folder, n=5, size=(64, 96), seed=0)
    return folder


def config(data: Path, save: Path, **kw) -> TrainingConfig:
    base = dict(
        TINY,
        data_paths=[data],
        save_path=save,
        num_workers=0,
        logger=[],
        batch_size=2,
        crop_size=48,
        device="cpu",
    )
    return TrainingConfig(**{**base, **kw})


# -- learning ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_tiny_model_overfits_four_images(four, tmp_path, seed):
    """80 full-batch steps without augmentation: the training loss drops below a quarter of the first
    epoch's and the mean foreground IoU on those images exceeds 0.5. Measured over 12 combinations of
    dataset seed (0, 1, 5) and training seed (0-3): IoU 0.74-1.00, loss ratio <= 0.06; an untrained
    network scores ~0.01. The IoU is measured twice: by the trainer's validation and by loading
    best.pt and calling predict, which checks that training and inference normalise alike."""
    cfg = config(four, tmp_path / "run", val_paths=[four], epochs=80, batch_size=4, crop_size=None, augment=False,
                 lr=1e-2, scheduler="none", val_every=40, logger=["csv"], note="overfit", model_type="tiny", seed=seed)  # fmt: skip
    result = train(cfg)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.25 * losses[0], losses[::10]
    assert result.metrics["mean_fg_iou"] > 0.5, result.metrics
    assert result.best_path == tmp_path / "run" / "best.pt" and result.best_epoch == 80

    model = load_model(result.best_path, device="cpu")
    samples = sorted(four.glob("*.tif"))
    from napari_fibsem.core.io.imageio import read_image, read_labels

    cm = sum(
        confusion_matrix(torch.from_numpy(model.predict(read_image(p).data).mask.astype(np.int64)),
                         torch.from_numpy(read_labels(four / "labels" / p.name).astype(np.int64)), 6)
        for p in samples
    )  # fmt: skip
    assert compute_metrics(cm, model.class_map).mean_fg_iou > 0.5
    meta, _ = read_bundle(result.best_path)
    assert meta.training_config["note"] == "overfit" and meta.training_config["model_type"] == "tiny"
    assert meta.metrics["epoch"] == 80 and meta.metrics["mean_fg_iou"] == pytest.approx(result.best_value)
    csv_rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].startswith("epoch,step,lr,train_loss,val_loss") and len(csv_rows) == 81


# -- resume and cancel -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(five, tmp_path_factory):
    """3 epochs x 2 steps with augmentation (crops, rotation, noise...) and a validation image."""
    save = tmp_path_factory.mktemp("uninterrupted") / "run"
    cfg = config(
        five,
        save,
        epochs=3,
        split=0.2,
        lr=1e-2,
        seed=3,
        augment={"noise": 0.02, "rotate": 20},
        logger=["csv"],
    )
    return cfg, train(cfg)


@pytest.mark.parametrize("stop_after", [3, 2], ids=["mid-epoch", "epoch-boundary"])
def test_resumed_run_gives_the_same_weights(uninterrupted, tmp_path, stop_after):
    ref_cfg, ref = uninterrupted
    cfg = ref_cfg.model_copy(update={"save_path": tmp_path / "run"})
    steps: list[int] = []

    def count(p: Progress) -> None:
        if p.phase == "train":
            steps.append(p.step)

    first = train(cfg, on_progress=count, should_stop=lambda: len(steps) >= stop_after)
    assert first.cancelled and first.global_step == stop_after
    assert (tmp_path / "run" / "last.state.pt").is_file()

    resumed = train(cfg.model_copy(update={"checkpoint": tmp_path / "run" / "last.pt"}))
    assert not resumed.cancelled and resumed.global_step == ref.global_step == 6
    _, expected = read_bundle(ref.last_path)
    _, got = read_bundle(resumed.last_path)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in ref.history]
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.history] == strip
    assert resumed.best_value == ref.best_value and resumed.best_epoch == ref.best_epoch


def test_worker_processes_do_not_change_the_result(uninterrupted, tmp_path):
    """Augmentation is seeded per (seed, epoch, image), loader seeds per (seed, epoch, rank): two
    DataLoader workers train exactly the same weights as none."""
    ref_cfg, ref = uninterrupted
    result = train(ref_cfg.model_copy(update={"save_path": tmp_path / "run", "num_workers": 2}))
    _, expected = read_bundle(ref.last_path)
    _, got = read_bundle(result.last_path)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_cancel_from_another_thread_style_call(five, tmp_path):
    """``Trainer.cancel()`` (what a widget's stop button calls) stops before the next step and saves."""
    cfg = config(five, tmp_path / "run", epochs=5, split=0)
    events: list[Progress] = []

    def on_progress(p: Progress) -> None:
        events.append(p)
        if p.phase == "train" and p.step == 1:
            trainer.cancel()

    trainer = Trainer(cfg, on_progress=on_progress)
    result = trainer.run()
    assert result.cancelled and result.global_step == 1 and result.epochs_completed == 0
    assert result.last_path is not None and load_model(result.last_path).num_classes == 6
    assert [e.phase for e in events] == ["setup", "train", "done"]
    assert events[1] == Progress(epoch=1, step=1, total=15, loss=events[1].loss, metrics={}, phase="train")
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[1].step = 2  # type: ignore[misc]


def test_resume_refuses_changed_settings(uninterrupted, tmp_path):
    ref_cfg, ref = uninterrupted
    run = tmp_path / "copy"
    shutil.copytree(ref.save_path, run)
    changed = ref_cfg.model_copy(
        update={"save_path": run, "checkpoint": run / "last.pt", "lr": 0.5, "batch_size": 1}
    )
    with pytest.raises(TrainingSetupError, match=r"these changed: batch_size: 2 -> 1; lr: 0.01 -> 0.5"):
        train(changed)
    with pytest.raises(TrainingSetupError, match=r"already done 3 of epochs: 3; raise epochs"):
        train(ref_cfg.model_copy(update={"save_path": run, "checkpoint": run / "last.pt"}))
    (run / "last.state.pt").unlink()
    with pytest.raises(TrainingSetupError, match="resume: true needs the training state"):
        train(changed.model_copy(update={"resume": True}))


def test_fine_tune_from_an_openfibsem_checkpoint(four, tmp_path):
    torch.manual_seed(1)
    net = create_model("Unet", "tu-resnet10t", device="cpu").torch_module
    ckpt = tmp_path / "openfibsem.pt"
    torch.save({"checkpoint": net.state_dict(), "encoder": "tu-resnet10t", "nc": 6}, ckpt)
    cfg = TrainingConfig(data_paths=[four], save_path=tmp_path / "ft", checkpoint=ckpt, epochs=1, batch_size=4,
                         crop_size=64, num_workers=0, logger=[], split=0, encoder="tu-resnet10t", device="cpu")  # fmt: skip
    result = train(cfg)
    meta, weights = read_bundle(result.last_path)
    assert (
        meta.encoder == "tu-resnet10t"
        and meta.source_format == "bundle"
        and meta.class_map == ClassMap.default()
    )
    assert meta.training_config["checkpoint"] == str(ckpt)
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, weights[k])]
    assert changed  # trained, starting from the dict's weights (an OpenFIBSEM net has the full depth)


# -- bad input -------------------------------------------------------------------------------------
def test_labels_outside_the_class_map_are_named(five, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(five, data)
    write_labels(data / "labels" / "synthetic_0002.tif", np.full((64, 96), 9, np.uint8))
    with pytest.raises(
        DatasetError, match=r"synthetic_0002\.tif: label values \[9\] are not in the class map"
    ):
        train(config(data, tmp_path / "run"))
    assert not (tmp_path / "run").exists()  # nothing written before the data is checked


def test_empty_datasets_are_named(five, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for p in five.glob("*.tif"):
        shutil.copy(p, unlabelled)
    with pytest.raises(
        DatasetError, match=r"no labelled training images: none of the 5 TIFFs in .*unlabelled"
    ):
        train(config(unlabelled, tmp_path / "run"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no TIFF images found in .*nothing"):
        train(config(tmp_path / "nothing", tmp_path / "run"))


def test_num_classes_must_match_the_class_map(five, tmp_path):
    with pytest.raises(
        TrainingSetupError,
        match=r"num_classes is 3 but the class map .*classes\.yaml has ids \[0, 1, 2, 3, 4, 5\]",
    ):
        train(config(five, tmp_path / "run", num_classes=3))
    with pytest.raises(TrainingSetupError, match="class_weights has 2 entries"):
        train(config(five, tmp_path / "run", class_weights=[1, 2]))


def test_checkpoints_that_do_not_fit_are_named(five, tmp_path):
    three = create_model(
        "Unet", "tu-resnet10t", ClassMap.from_names(["bg", "a", "b"]), device="cpu", **TINY["model_kwargs"]
    )
    three_path = three.save(tmp_path / "three.pt")
    with pytest.raises(TrainingSetupError, match=r"three\.pt: the checkpoint predicts 3 classes .* needs 6"):
        train(config(five, tmp_path / "run", checkpoint=three_path))
    six = create_model("Unet", "tu-resnet10t", device="cpu", **TINY["model_kwargs"]).save(tmp_path / "six.pt")
    with pytest.raises(
        TrainingSetupError,
        match=r"six\.pt: the checkpoint does not match the config \(encoder: config 'resnet18'",
    ):
        train(config(five, tmp_path / "run", checkpoint=six, encoder="resnet18"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TrainingSetupError, match=r"junk\.pt"):
        train(config(five, tmp_path / "run", checkpoint=junk))


def test_an_existing_run_is_not_overwritten_silently(five, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(b"someone's model")
    with pytest.raises(TrainingSetupError, match="already holds a run .*overwrite: true"):
        train(config(five, tmp_path / "run"))
    assert (tmp_path / "run" / "best.pt").read_bytes() == b"someone's model"


def test_missing_wandb_is_a_clear_error(five, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ImportError, match="pip install wandb"):
        train(config(five, tmp_path / "run", wandb=True, epochs=1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_on_cuda_trains_and_resumes(five, tmp_path):
    cfg = config(five, tmp_path / "run", epochs=3, split=0.2, device="cuda", amp=True, lr=1e-2)
    first = train(cfg)
    assert first.global_step == 6 and np.isfinite(first.history[-1]["train_loss"])
    state = torch.load(tmp_path / "run" / "last.state.pt", weights_only=True)
    assert state["scaler"] and "scale" in state["scaler"]  # the grad scaler is saved for resuming
    again = train(cfg.model_copy(update={"epochs": 4, "checkpoint": tmp_path / "run" / "last.pt"}))
    assert again.global_step == 8 and again.epochs_completed == 4
    assert load_model(again.last_path, device="cpu").predict(np.zeros((64, 96), np.uint8)).mask.shape == (
        64,
        96,
    )


# -- loggers -----------------------------------------------------------------------------------------
def test_tensorboard_is_the_default_and_records_scalars_and_panels(five, tmp_path):
    """TensorBoard is on by default; its event files hold the per-epoch metrics and the
    image | label | prediction panels, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert "tensorboard" in TrainingConfig(data_paths=[five], save_path="o").logger
    cfg = config(five, tmp_path / "run", epochs=2, split=0.4, train_log_freq=1, val_log_freq=1,
                 logger=["tensorboard"])  # fmt: skip
    result = train(cfg)
    runs = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(runs) == 1
    acc = EventAccumulator(str(runs[0].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "epoch/mean_fg_iou" in scalars and "epoch/train_loss" in scalars
    ious = [e.value for e in acc.Scalars("epoch/mean_fg_iou")]
    assert len(ious) == 2 and ious[-1] == pytest.approx(result.history[-1]["mean_fg_iou"], abs=1e-6)
    images = acc.Tags()["images"]
    assert images, "no image panels were logged"
    sizes = {(p.height, p.width) for tag in images for p in acc.Images(tag)}
    # image | label | prediction side by side: 48x48 training crops, whole 64x96 validation images
    assert sizes <= {(48, 3 * 48), (64, 3 * 96)} and len(sizes) == 2, sizes


# -- mixed precision on the CPU ----------------------------------------------------------------------
def _forward_dtypes(cfg: TrainingConfig) -> set[torch.dtype]:
    """The dtypes the network's first convolution produced while ``cfg`` trained."""
    seen: set[torch.dtype] = set()

    def hook(module, _inputs, out) -> None:
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = train(cfg)
    finally:
        handle.remove()
    assert np.isfinite(result.history[-1]["train_loss"])
    return seen


@pytest.mark.skipif(
    not cpu_has_native_bfloat16(),
    reason="this CPU has no native bfloat16 (AVX512-BF16 or AMX)",
)
def test_amp_trains_in_bfloat16_on_a_cpu_that_has_it_and_saves_float32(five, tmp_path):
    assert _forward_dtypes(config(five, tmp_path / "amp", epochs=1, split=0.4, amp=True)) == {torch.bfloat16}
    assert _forward_dtypes(config(five, tmp_path / "fp32", epochs=1, split=0.4, amp=False)) == {torch.float32}
    bundle = torch.load(tmp_path / "amp" / "last.pt", weights_only=True)
    weights = [v for v in bundle["state_dict"].values() if v.is_floating_point()]
    assert weights and all(v.dtype == torch.float32 for v in weights)
    pred = load_model(tmp_path / "amp" / "last.pt", device="cpu").predict(np.zeros((64, 96), np.uint8))
    assert pred.probs.dtype == np.float32 and pred.mask.shape == (64, 96)


def test_amp_stays_float32_on_a_cpu_without_native_bfloat16(monkeypatch):
    from napari_fibsem.core.training import prepare

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert prepare.autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert prepare.autocast_dtype(torch.device("cpu")) is torch.bfloat16
