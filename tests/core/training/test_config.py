"""Training config: the keys OpenFIBSEM users write, the old ``train:`` layout, one clear error per bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from napari_fibsem.core.training import ConfigError, TrainingConfig, load_config, parse_config


@pytest.fixture
def data(tmp_path) -> Path:
    (tmp_path / "data" / "labels").mkdir(parents=True)
    return tmp_path / "data"


def write(tmp_path: Path, content: dict | str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_documented_openfibsem_keys_are_read(tmp_path, data):
    """The example config from OpenFIBSEM's README, key for key."""
    cfg = load_config(write(tmp_path, {
        "data_paths": [str(data)], "label_paths": [str(data / "labels")], "save_path": str(tmp_path / "ck"),
        "checkpoint": None, "encoder": "resnet34", "num_classes": 6, "epochs": 50, "split": 0.1,
        "batch_size": 4, "lr": 3.0e-4, "train_log_freq": 32, "val_log_freq": 32, "wandb": False,
        "wandb_project": "autolamella-mega", "wandb_entity": "openfibsem", "model_type": "mega-model",
        "note": "notes about this specific training run",
    }))  # fmt: skip
    assert cfg.data_paths == [data.absolute()] and cfg.label_paths == [(data / "labels").absolute()]
    assert (cfg.encoder, cfg.num_classes, cfg.epochs, cfg.split, cfg.batch_size, cfg.lr) == (
        "resnet34",
        6,
        50,
        0.1,
        4,
        3e-4,
    )
    assert cfg.model_type == "mega-model" and cfg.note.startswith("notes")
    assert cfg.to_jsonable()["note"] == cfg.note  # goes into the bundle as JSON


def test_old_train_layout_is_mapped(tmp_path, data):
    cfg = load_config(write(tmp_path, {
        "labelling": {"raw_dir": "/x", "data_dir": "/y"},  # other OpenFIBSEM sections are ignored
        "train": {
            "data_dir": str(data), "save_dir": str(tmp_path / "models"), "wandb": False, "checkpoint": None,
            "encoder": "resnet18", "epochs": 10, "cuda": False, "batch_size": 1, "num_classes": 3,
            "learning_rate": 0.0001, "wandb_project": "fibsem_pipeline", "wandb_entity": "demarcolab",
            "optimizer": "adam",
        },
        "inference": {"data_dir": "/z"},
    }))  # fmt: skip
    assert cfg.data_paths == [data.absolute()]
    assert cfg.label_paths == [(data / "labels").absolute()]  # OpenFIBSEM keeps labels in data_dir/labels
    assert cfg.save_path == (tmp_path / "models").absolute()
    assert (cfg.lr, cfg.device, cfg.optimizer, cfg.num_classes, cfg.encoder) == (
        1e-4,
        "cpu",
        "adam",
        3,
        "resnet18",
    )
    on_gpu = parse_config({"train": {"data_dir": str(data), "save_dir": "m", "cuda": True}})
    assert on_gpu.device == "auto"  # OpenFIBSEM fell back to the CPU when CUDA was missing; so do we


def test_every_bad_key_in_one_message(tmp_path, data):
    path = write(tmp_path, {
        "data_paths": [str(data)], "save_path": "out",
        "learning_rate": 0.1,          # old name in the new layout
        "batchsize": 8,                # typo
        "epochs": "ten",               # wrong type
        "split": 1.5,                  # out of range
        "device": "gpu",               # not a device
        "resume": "maybe",             # neither auto nor a bool
        "augment": {"rotat": 5},       # typo in a nested section
        "loss": "ce+foo",              # unknown loss term
    })  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: 8 problem(s) in the training config")
    assert "learning_rate: unknown key; did you mean 'lr'?" in msg
    assert "batchsize: unknown key; did you mean 'batch_size'?" in msg
    assert "epochs: " in msg and "'ten'" in msg
    assert "split: Input should be less than 1 (got 1.5)" in msg
    assert "device: 'gpu' is not a device" in msg
    assert "resume: Input should be 'auto' or a valid boolean" in msg and msg.count("resume:") == 1
    assert "augment.rotat: unknown key; did you mean 'rotate'?" in msg
    assert "loss: 'ce+foo': use ce, dice, focal" in msg
    assert len(info.value.problems) == 8


def test_missing_paths_and_keys_are_named(tmp_path, data):
    with pytest.raises(ConfigError) as info:
        load_config(
            write(tmp_path, {"data_paths": [str(data), str(tmp_path / "nowhere")], "checkpoint": "gone.pt"})
        )
    msg = str(info.value)
    assert f"data_paths[1]: {tmp_path / 'nowhere'} does not exist" in msg
    assert "checkpoint: gone.pt does not exist" in msg
    assert "save_path: required key is missing" in msg


def test_old_layout_errors_quote_the_old_names(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(
            write(
                tmp_path,
                {
                    "train": {
                        "data_dir": str(tmp_path / "no"),
                        "learning_rate": "fast",
                        "cuda": 1.5,
                        "extra": 1,
                    },
                    "oops": {},
                },
            )
        )
    msg = str(info.value)
    assert "train.save_dir: required key is missing" in msg
    assert "train.learning_rate: " in msg and "'fast'" in msg
    assert "train.extra: unknown key" in msg
    assert "oops: unknown top-level key" in msg
    assert f"train.data_dir: {tmp_path / 'no'} does not exist" in msg
    assert "labels" not in msg.split("train.data_dir")[-1]  # the missing labels/ is not reported twice


def test_unreadable_files_name_the_file(tmp_path):
    bad = write(tmp_path, "data_paths: [unclosed\n", "broken.yaml")
    with pytest.raises(ConfigError, match=r"(?s)broken\.yaml: 1 problem.*not valid YAML at line 2"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"(?s)list\.yaml: .*expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(ConfigError, match=r"(?s)absent\.yaml: .*cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_shorthands(data):
    cfg = TrainingConfig(
        data_paths=str(data),
        save_path="o",
        augment=False,
        loss="ce+dice+focal",
        crop_size=96,
        logger="csv",
        wandb=True,
    )
    assert cfg.data_paths == [data.absolute()]
    assert cfg.augment.enabled is False
    assert (cfg.loss.ce, cfg.loss.dice, cfg.loss.focal) == (1.0, 1.0, 1.0)
    assert cfg.crop_size == (96, 96)
    assert cfg.logger == ["csv", "wandb"]  # wandb: true switches the wandb logger on
    assert TrainingConfig(data_paths=[data], save_path="o", logger=None).logger == []


def test_model_and_normalisation_keys_are_checked(data):
    with pytest.raises(ValueError, match="encoder_weights"):
        TrainingConfig(data_paths=[data], save_path="o", model_kwargs={"encoder_weights": "imagenet"})
    with pytest.raises(ValueError, match="normalisation mode"):
        TrainingConfig(data_paths=[data], save_path="o", normalization={"mode": "zscore"})
    with pytest.raises(ValueError, match="label_paths has 2 entries but data_paths has 1"):
        TrainingConfig(data_paths=[data], label_paths=[data, data], save_path="o")


def test_a_dumped_config_keeps_input_scale_unset_when_it_was_not_given(tmp_path, data):
    """Every copy of a config (run folder, DDP processes, the form's YAML) goes through
    ``to_jsonable``; an unset scale must stay unset there, or fine-tuning a half-scale checkpoint
    from such a copy would silently train at full scale."""
    unset = TrainingConfig(data_paths=[data], save_path=tmp_path / "run")
    assert "input_scale" not in unset.to_jsonable()
    again = TrainingConfig.model_validate(unset.to_jsonable())
    assert "input_scale" not in again.model_fields_set and again == unset
    half = TrainingConfig(data_paths=[data], save_path=tmp_path / "run", input_scale=0.5)
    again = TrainingConfig.model_validate(half.to_jsonable())
    assert "input_scale" in again.model_fields_set and again.input_scale == 0.5
    full = TrainingConfig(data_paths=[data], save_path=tmp_path / "run", input_scale=1.0)
    assert full.to_jsonable()["input_scale"] == 1.0  # given explicitly: kept, even at the default
