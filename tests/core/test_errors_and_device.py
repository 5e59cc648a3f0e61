"""One error base, one configuration error, one device resolver."""

from __future__ import annotations

import pytest
import torch

from napari_fibsem.core.device import resolve_device
from napari_fibsem.core.errors import ConfigError, DeviceError, FibsemError


def test_every_error_class_napari_fibsem_raises_shares_one_base():
    import importlib
    import pkgutil

    import napari_fibsem.core as core

    cancellations = {"EvaluationStopped", "WorkflowCancelled"}  # control flow, not errors
    found = {}
    for info in pkgutil.walk_packages(core.__path__, "napari_fibsem.core."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, Exception) and obj.__module__ == info.name:
                found[name] = obj
    assert len(found) >= 20
    strays = sorted(n for n, cls in found.items() if not issubclass(cls, FibsemError) and n not in cancellations)
    assert strays == []


def test_microscope_and_training_use_the_same_config_error():
    from napari_fibsem.core.microscope import ConfigError as microscope_error
    from napari_fibsem.core.training import ConfigError as training_error

    assert microscope_error is training_error is ConfigError
    listed = ConfigError("run.yaml", ["lr: must be positive", "epochz: unknown key"], "training config")
    assert str(listed).startswith("run.yaml: 2 problem(s) in the training config:")
    assert listed.problems == ["lr: must be positive", "epochz: unknown key"]
    single = ConfigError("scope.yaml: file does not exist")
    assert str(single) == "scope.yaml: file does not exist" and isinstance(single, ValueError)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected and resolve_device("auto").type == expected
    assert resolve_device("cpu", local_rank=1) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda:1' was asked for but torch sees no CUDA GPU"):
            resolve_device("cuda:1")
    else:
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
