"""``napari-fibsem train``: the example config runs as its header says, bad configs fail clearly."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from napari_fibsem.core.models import load_model

EXE = shutil.which("napari-fibsem") or str(Path(sys.executable).parent / "napari-fibsem")
EXAMPLE = Path(__file__).parents[3] / "examples" / "train_config.yaml"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_example_config_runs_as_documented(tmp_path):
    """Run the commands written in the example's header, from a fresh working directory."""
    commands = [
        shlex.split(line.lstrip("# ").strip())
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith("#   napari-fibsem ")
    ]
    assert [c[1] for c in commands] == ["synth", "train"]
    for cmd in commands:
        args = [str(EXAMPLE) if a == "examples/train_config.yaml" else a for a in cmd[1:]]
        out = run(args, tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
    assert "epoch 4/4" in out.stderr + out.stdout and "best: " in out.stdout
    run_dir = tmp_path / "outputs" / "example_run"
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 1 + 4
    model = load_model(run_dir / "best.pt", device="cpu")
    assert model.class_map.names[1] == "lamella" and model.encoder == "tu-resnet10t"


def test_bad_config_exits_with_the_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data_paths: [missing]\nsave_path: out\nepochs: -1\nlearing_rate: 0.1\n")
    out = run(["train", "--config", str(bad)], tmp_path)
    assert out.returncode == 2
    assert f"error: {bad}: 3 problem(s)" in out.stderr
    assert (
        "epochs:" in out.stderr
        and "learing_rate: unknown key" in out.stderr
        and "data_paths: missing does not exist" in out.stderr
    )
    assert "Traceback" not in out.stderr


def test_torchrun_launches_the_same_command(tmp_path):
    """``torchrun -m napari_fibsem.cli train`` (the multi-GPU/multi-node way in): the process group
    comes from torchrun's environment, gloo on the CPU, and only rank 0 reports and writes."""
    import yaml

    from napari_fibsem.core.synthetic.dataset import write_dataset

    write_dataset(tmp_path / "ds", n=5, size=(64, 96), seed=0)
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update(
        data_paths=[str(tmp_path / "ds")],
        label_paths=None,
        save_path=str(tmp_path / "run"),
        epochs=2,
        device="cpu",
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    torchrun = Path(sys.executable).parent / "torchrun"
    out = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "napari_fibsem.cli", "train", "--config", "c.yaml"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("best: ") == 1 and "x2 processes" in out.stdout + out.stderr
    assert "step 2/2" in out.stdout  # 4 training images over two processes: one batch each per epoch
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "last.state.pt",
        "metrics.csv",
    ]
