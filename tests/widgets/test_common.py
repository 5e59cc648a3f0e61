"""Background work whose widget was closed meanwhile must not touch the dead widget."""

from __future__ import annotations

import threading

from qtpy.QtWidgets import QLabel, QWidget

from napari_fibsem.widgets._common import alive, start_worker


def test_results_for_a_deleted_owner_are_dropped(qtbot) -> None:
    owner = QWidget()
    label = QLabel("waiting", owner)
    release = threading.Event()
    shown: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "done"

    def show(text: str) -> None:
        label.setText(text)  # would raise "wrapped C/C++ object ... has been deleted"
        shown.append(text)

    worker = start_worker(slow, on_returned=show, owner=owner)
    assert worker is not None
    owner.deleteLater()
    qtbot.waitUntil(lambda: not alive(owner), timeout=2000)
    assert not alive(label)
    release.set()
    qtbot.waitSignal(worker.finished, timeout=5000)
    qtbot.wait(50)
    assert shown == []


def test_results_for_a_live_owner_arrive(qtbot) -> None:
    owner = QWidget()
    qtbot.addWidget(owner)
    label = QLabel("waiting", owner)
    worker = start_worker(lambda: "done", on_returned=label.setText, owner=owner)
    assert worker is not None
    qtbot.waitUntil(lambda: label.text() == "done", timeout=5000)
