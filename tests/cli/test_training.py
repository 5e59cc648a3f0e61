"""The command line's one training wrapper: step bar, first Ctrl-C stops, errors exit 2, group teardown."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import pytest
import typer

from napari_fibsem.cli import _training
from napari_fibsem.cli._training import CtrlC, StepBar, run_training


@dataclass
class _Progress:
    epoch: int = 1
    step: int = 0
    total: int = 4
    loss: float | None = None
    metrics: dict = field(default_factory=dict)
    phase: str = "train"
    message: str = ""


def test_first_ctrl_c_stops_the_run_and_the_second_one_kills(capsys):
    stopped = []
    before = signal.getsignal(signal.SIGINT)
    with CtrlC("stopping after this step", lambda: stopped.append(True)) as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.pressed and stopped == [True]
        with pytest.raises(KeyboardInterrupt):  # the handler removed itself: Ctrl-C again kills
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    assert "stopping after this step" in capsys.readouterr().out


def test_ctrl_c_untouched_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with CtrlC("unused") as ctrl_c:
        assert signal.getsignal(signal.SIGINT) is not before
    assert not ctrl_c.pressed and signal.getsignal(signal.SIGINT) is before


def test_step_bar_shows_the_metric_and_optionally_the_messages(capsys):
    with StepBar(3, ("val_loss", "val_loss", ".4f"), show_messages=True) as bar:
        bar.update(_Progress(phase="setup", message="12 train crops"))
        bar.update(_Progress(step=2, loss=0.5, metrics={"val_loss": 0.25}, phase="validate", message="epoch 1: val"))
        assert bar._bar.n == 2 and bar._bar.postfix == "loss=0.5000, val_loss=0.2500"
    out = capsys.readouterr()
    assert "12 train crops" in out.out and "epoch 1: val" in out.out and "epoch 1/3" in out.err
    with StepBar(3, ("mean_fg_iou", "fg_iou", ".3f")) as quiet:
        quiet.update(_Progress(phase="setup", message="not shown"))
    assert "not shown" not in capsys.readouterr().out


class _Ctx:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled


@pytest.fixture
def teardowns(monkeypatch):
    calls: list[bool] = []
    import napari_fibsem.core.training.ddp as ddp

    monkeypatch.setattr(ddp, "cleanup", lambda barrier: calls.append(barrier))
    return calls


def test_run_training_picks_here_or_spawned_and_tears_the_group_down(teardowns, capsys):
    assert run_training(1, _Ctx(True), (ValueError,), here=lambda: "here", spawned=lambda: "spawned") == "here"
    assert run_training(2, _Ctx(False), (ValueError,), here=lambda: "here", spawned=lambda: "spawned") == "spawned"
    assert "training with 2 processes" in capsys.readouterr().out
    assert teardowns == [True]  # only the torchrun (enabled) group, with a barrier after success


def test_run_training_turns_listed_errors_into_exit_2(teardowns, capsys):
    def broken():
        raise ValueError("bad data")

    with pytest.raises(typer.Exit) as exc:
        run_training(1, _Ctx(True), (ValueError,), here=broken, spawned=broken)
    assert exc.value.exit_code == 2 and "error: bad data" in capsys.readouterr().err
    assert teardowns == [False]  # no barrier: the other ranks may never reach it
    with pytest.raises(KeyError):  # anything else is a bug: its traceback is kept
        run_training(1, _Ctx(False), (ValueError,), here=lambda: {}["x"], spawned=broken)


def test_nprocs_cannot_nest_inside_torchrun(capsys):
    _training.check_nprocs(1, _Ctx(True))
    _training.check_nprocs(4, _Ctx(False))
    with pytest.raises(typer.Exit):
        _training.check_nprocs(2, _Ctx(True))
    assert "under torchrun leave it at 1" in capsys.readouterr().err
