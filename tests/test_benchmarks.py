"""The benchmark scripts run end to end (tiny settings) so they do not rot; their figures come from
full runs by hand (see benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_train_quality_quick(tmp_path, capsys, monkeypatch):
    bench = _load("train_quality", monkeypatch)
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    figure = re.search(r"mean foreground IoU on the test split: ([0-9.]+|nan)", out)
    assert figure, out
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "metrics.csv").is_file()
    assert len(list((tmp_path / "data" / "test" / "labels").glob("*.tif"))) == 2
    # the evaluation is the whole test split's confusion matrix, so IoUs are fractions
    ious = re.search(r"test IoU per class: (.*)", out).group(1)
    values = [float(v) for v in re.findall(r" ([0-9.]+)(?:,|$)", ious)]
    assert values and all(0 <= v <= 1 for v in values)


def test_detection_quick(capsys, monkeypatch):
    bench = _load("detection", monkeypatch)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"detect_features \(all catalogue features\): [0-9.]+ ms per mask", out), out
    hits, total = map(int, re.search(r"within 2 px: (\d+)/(\d+)", out).groups())
    assert total > 10 and hits == total


def test_alignment_quick(capsys, monkeypatch):
    bench = _load("alignment", monkeypatch)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    errors = [float(v) for v in re.findall(r"error max ([0-9.]+) px", out)]
    assert errors and max(errors) < 0.5, out


def test_sam_latency_quick(capsys, monkeypatch):
    pytest.importorskip("segment_anything")
    pytest.importorskip("mobile_sam")
    bench = _load("sam_latency", monkeypatch)
    assert bench.main(["--quick", "--repeats", "2", "--click-every", "0.2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"prompt -> mask vit_t \(1 point\): ours [0-9.]+ ms", out), out
    assert re.search(r"mask IoU vs SamPredictor 0\.9[89]\d*|mask IoU vs SamPredictor 1\.0000", out), out
    assert "cached revisit vit_t: encoder runs 0 " in out
    assert re.search(r"next image wait vit_t .* with prefetch [0-9.]+ s", out), out
