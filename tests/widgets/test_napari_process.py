"""A napari process stays alive and ends cleanly with the plugin in it (each case in a fresh process).

Both failures happened to users: torch imported after the viewer drew under software OpenGL killed
the process (triton binding to Mesa's LLVM), and closing napari while SAM prefetched in the
background aborted it ("terminate called without an active exception").
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def run_script(code: str, tmp_path, timeout: int = 600) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    return subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def test_torch_imported_after_the_viewer_drew(tmp_path):
    """A user's script: draw a viewer, open something of ours, then import torch and smp itself."""
    result = run_script(
        """
        import sys
        import napari
        viewer = napari.Viewer(show=True)
        viewer.screenshot(canvas_only=False)  # the canvas drew: Mesa (and its LLVM) are loaded
        viewer.open_sample("napari-fibsem", "synthetic_ion")
        from napari_fibsem._llvm_guard import foreign_llvm_loaded
        print("foreign LLVM:", foreign_llvm_loaded(), flush=True)
        import torch
        import segmentation_models_pytorch
        model = segmentation_models_pytorch.Unet("resnet18", encoder_weights=None, classes=2)
        print("ok", flush=True)
        viewer.close()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
    if "foreign LLVM: True" not in result.stdout:
        pytest.skip("this display does not use Mesa's software OpenGL: the crash cannot happen here")


def test_closing_napari_while_sam_prefetches(tmp_path):
    pytest.importorskip("mobile_sam")
    result = run_script(
        """
        import sys, time
        from pathlib import Path
        import napari
        from qtpy.QtWidgets import QApplication
        from napari_fibsem.core.synthetic.dataset import write_dataset
        folder = Path(sys.argv[1]) / "ds"
        write_dataset(folder, n=4, size=(256, 384), seed=0)
        import torch
        from napari_fibsem.core.sam.models import build_sam
        torch.save(build_sam("vit_t").state_dict(), folder.parent / "mobile_sam.pt")
        viewer = napari.Viewer(show=True)
        _, w = viewer.window.add_plugin_dock_widget("napari-fibsem", "Label segmentation")
        w.open_folder(folder)
        w.sam.load(folder.parent / "mobile_sam.pt")
        deadline = time.time() + 300
        while time.time() < deadline:  # until the neighbours' prefetch is running
            QApplication.processEvents()
            time.sleep(0.01)
            s = w.sam.service
            if s is not None and w.sam.embedding is not None and s.prefetching:
                break
        print("prefetching:", bool(s and s.prefetching), flush=True)
        viewer.close()
        print("closed", flush=True)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr
    assert "prefetching: True" in result.stdout and "closed" in result.stdout
