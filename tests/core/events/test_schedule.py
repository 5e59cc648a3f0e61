"""The training queue: order, failures, resume after a crash, the lock, one run per GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from napari_fibsem.core.events import schedule as sched
from napari_fibsem.core.events.schedule import (
    LOCK_FILE,
    QUEUE_FILE,
    QueueItem,
    ScheduleError,
    State,
    gpu_slots,
    read_queue,
    schedule,
)

# A stand-in for `events train`: reads its "settings" (JSON is YAML), sleeps, records what it saw.
FAKE_TRAIN = textwrap.dedent(
    """
    import json, os, sys, time
    cfg = json.load(open(sys.argv[1]))
    t0 = time.time()
    time.sleep(cfg.get("sleep", 0))
    rec = {"name": cfg["name"], "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "t0": t0, "t1": time.time()}
    with open(cfg["record"], "a") as f:
        f.write(json.dumps(rec) + "\\n")
    if cfg.get("fail"):
        print("boom: the loss went NaN")
        sys.exit(3)
    """
)


def fake_command(settings: Path) -> list[str]:
    return [sys.executable, "-c", FAKE_TRAIN, str(settings)]


def make_settings(folder: Path, name: str, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    cfg = {"name": name, "record": str(folder / "record.jsonl"), "output": f"runs/{name}", **extra}
    path.write_text(json.dumps(cfg))
    return path


def records(folder: Path) -> list[dict]:
    path = folder / "record.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_runs_in_order_and_records_each_run(tmp_path):
    paths = [make_settings(tmp_path, n) for n in ("b_first", "a_second", "c_third")]
    items = schedule(paths, command=fake_command)
    assert [r["name"] for r in records(tmp_path)] == [
        "b_first",
        "a_second",
        "c_third",
    ]  # given order, not sorted
    assert (tmp_path / QUEUE_FILE).is_file() and not (tmp_path / LOCK_FILE).exists()
    saved = read_queue(tmp_path)
    assert [i.settings for i in saved] == [str(p.resolve()) for p in paths]
    for item in saved:
        assert item.state is State.DONE and item.returncode == 0 and item.error is None
        assert item.started <= item.ended and item.attempts == 1 and item.pid is None
        assert item.output == str(tmp_path / "runs" / Path(item.settings).stem)
        assert Path(item.log).is_file()
    assert [i.state for i in items] == [State.DONE] * 3

    # again, plus one new file: only the new one runs
    extra = make_settings(tmp_path, "d_new")
    schedule([*paths, extra], command=fake_command)
    assert [r["name"] for r in records(tmp_path)][-1] == "d_new" and len(records(tmp_path)) == 4


def test_a_failing_run_is_recorded_and_the_queue_moves_on(tmp_path):
    paths = [
        make_settings(tmp_path, "a"),
        make_settings(tmp_path, "b", fail=True),
        make_settings(tmp_path, "c"),
    ]
    messages: list[str] = []
    schedule(paths, command=fake_command, write=messages.append)
    a, b, c = read_queue(tmp_path)
    assert (a.state, b.state, c.state) == (State.DONE, State.FAILED, State.DONE)
    assert b.returncode == 3 and "exit code 3" in b.error and "boom: the loss went NaN" in b.error
    assert any(m.startswith("failed b.yaml") for m in messages)

    schedule(paths, command=fake_command)  # failed ones stay failed unless asked
    assert len(records(tmp_path)) == 3
    schedule(paths, command=fake_command, retry_failed=True)
    assert [r["name"] for r in records(tmp_path)][3:] == ["b"]
    assert read_queue(tmp_path)[1].attempts == 2


def test_resume_after_the_scheduler_is_killed(tmp_path):
    """Kill the scheduler (and its training) mid-run: the next schedule takes the stale lock over,
    keeps the finished run and restarts the interrupted one."""
    paths = [
        make_settings(tmp_path, "a"),
        make_settings(tmp_path, "b", sleep=60),
        make_settings(tmp_path, "c"),
    ]
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from napari_fibsem.core.events.schedule import schedule
        FAKE = {FAKE_TRAIN!r}
        schedule({[str(p) for p in paths]!r}, command=lambda s: [sys.executable, "-c", FAKE, str(s)])
        """
    )
    scheduler = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = read_queue(tmp_path) if (tmp_path / QUEUE_FILE).exists() else []
            if len(items) == 3 and items[1].state is State.RUNNING and items[1].pid:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the scheduler never started the second run")
        train_pid = items[1].pid
    finally:
        scheduler.kill()  # a hard crash: no clean-up runs
        scheduler.wait()
    os.kill(train_pid, 9 if sys.platform != "win32" else 1)
    deadline = time.monotonic() + 10
    while sched.pid_alive(train_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / LOCK_FILE).exists()  # left behind by the crash

    paths[1].write_text(json.dumps({**json.loads(paths[1].read_text()), "sleep": 0}))
    schedule(paths, command=fake_command)
    a, b, c = read_queue(tmp_path)
    assert (a.state, b.state, c.state) == (State.DONE, State.DONE, State.DONE)
    assert b.attempts == 2 and a.attempts == 1
    assert [r["name"] for r in records(tmp_path)] == ["a", "b", "c"]  # a did not run again


def test_a_running_item_whose_process_lives_is_left_alone(tmp_path):
    a, b = make_settings(tmp_path, "a"), make_settings(tmp_path, "b")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket

        sched._write_queue(
            tmp_path,
            [QueueItem(str(a.resolve()), State.RUNNING, pid=sleeper.pid, host=socket.gethostname(), attempts=1),
             QueueItem(str(b.resolve()))],
        )  # fmt: skip
        messages: list[str] = []
        schedule([a, b], command=fake_command, write=messages.append)
        first, second = read_queue(tmp_path)
        assert first.state is State.RUNNING and second.state is State.DONE
        assert any("still running" in m for m in messages)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_live_lock_refuses_a_second_scheduler(tmp_path):
    a = make_settings(tmp_path, "a")
    holder = subprocess.Popen(  # another scheduler, holding the queue's OS lock until its stdin closes
        [sys.executable, "-c", "import sys; from pathlib import Path; from napari_fibsem.core.events.schedule "
         f"import queue_lock\nwith queue_lock(Path({str(tmp_path)!r})):\n print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ScheduleError, match="in use by process") as refused:
            schedule([a], command=fake_command)
        assert f"process {holder.pid} on" in str(refused.value)
    finally:
        holder.communicate("")
    assert records(tmp_path) == []
    schedule([a], command=fake_command)  # released with its holder
    assert [r["name"] for r in records(tmp_path)] == ["a"]


def test_a_crashed_holder_releases_the_lock_even_when_its_pid_is_reused(tmp_path):
    """The old PID check took a lock over only when its pid was dead: a reused pid blocked the
    queue. The OS lock goes with its process, whatever the leftover files say."""
    a = make_settings(tmp_path, "a")
    (tmp_path / LOCK_FILE).write_text("")
    (tmp_path / sched.OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": "here"}))
    schedule([a], command=fake_command)
    assert [r["name"] for r in records(tmp_path)] == ["a"]
    assert not (tmp_path / LOCK_FILE).exists() and not (tmp_path / sched.OWNER_FILE).exists()


def test_missing_settings_file_is_named(tmp_path):
    with pytest.raises(ScheduleError, match="nope.yaml"):
        schedule([tmp_path / "nope.yaml"], command=fake_command)


def test_gpu_slots(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for count, want in ((0, [None]), (1, [None]), (2, ["0", "1"]), (4, ["0", "1", "2", "3"])):
        monkeypatch.setattr(sched, "cuda_device_count", lambda c=count: c)
        assert gpu_slots(None) == want
    assert gpu_slots(0) == [""]  # explicit 0: hide the GPUs
    assert gpu_slots(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert gpu_slots(2) == ["3", "5"]  # the GPUs this process was given
    with pytest.raises(ScheduleError):
        gpu_slots(-1)


def test_one_run_per_gpu_at_a_time(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sched, "cuda_device_count", lambda: 2)
    paths = [make_settings(tmp_path, f"r{i}", sleep=0.6) for i in range(4)]
    schedule(paths, command=fake_command)
    recs = {r["name"]: r for r in records(tmp_path)}
    items = read_queue(tmp_path)
    assert all(i.state is State.DONE for i in items)
    for item in items:  # each subprocess saw the GPU its item records
        assert recs[Path(item.settings).stem]["gpu"] == item.gpu in ("0", "1")
    spans = sorted((r["t0"], r["t1"], r["gpu"]) for r in recs.values())
    overlapping = [(p, q) for i, p in enumerate(spans) for q in spans[i + 1 :] if q[0] < p[1]]
    assert overlapping  # two ran at once ...
    assert all(p[2] != q[2] for p, q in overlapping)  # ... on different GPUs
    assert max(sum(s[0] <= t < s[1] for s in spans) for t, _, _ in spans) <= 2  # never more than two


def test_real_events_train_runs_from_the_queue(tmp_path, monkeypatch):
    """The default command (`python -m napari_fibsem.cli events train`) on a tiny set; a settings file
    whose training set is missing fails with the CLI's message and the next one still runs."""
    import tifffile

    from napari_fibsem.core.events.catalogue import Catalogue
    from napari_fibsem.core.events.ingest import ingest
    from napari_fibsem.core.events.synthetic_movie import synthetic_movie
    from napari_fibsem.core.events.training_sets import training_set

    raw = tmp_path / "raw" / "cells"
    raw.mkdir(parents=True)
    for seed in range(4):
        movie = synthetic_movie(seed, frames=10, size=(48, 56), blobs=3, splits=2, blinks=0)
        tifffile.imwrite(raw / f"m{seed}.tif", movie.stack)
        rows = ["index,axis-0,axis-1,axis-2"] + [
            f"{i},{p.frame},{p.y},{p.x}" for i, p in enumerate(movie.points)
        ]
        (raw / f"m{seed}.csv").write_text("\n".join(rows) + "\n")
    ingest(tmp_path / "raw", tmp_path / "events", size=32)
    catalogue = Catalogue(tmp_path / "events")
    catalogue.rebuild()
    folder = training_set(catalogue, {}, tmp_path / "sets", split=(0.5, 0.25, 0.25))
    tiny = "n_frames: 3\nnb_filters: 4\ndepth: 2\nepochs: 1\nbatch_size: 16\ndevice: cpu\nlogger: []\n"
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "1_broken.yaml").write_text(
        f"training_set: {tmp_path / 'missing'}\noutput: ../runs/broken\n{tiny}"
    )
    (settings / "2_tiny.yaml").write_text(f"training_set: {folder}\noutput: ../runs/tiny\n{tiny}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    items = schedule(sorted(settings.glob("*.yaml")), queue_dir=tmp_path / "queue", gpus=0)
    broken, ok = items
    assert broken.state is State.FAILED and broken.returncode == 2 and "training_set" in broken.error
    assert ok.state is State.DONE, ok.error
    assert ok.output == str(tmp_path / "settings" / ".." / "runs" / "tiny")
    assert (Path(ok.output) / "best.pt").is_file() and ok.gpu == ""
    assert (tmp_path / "queue" / QUEUE_FILE).is_file()


def test_events_schedule_command_resumes_a_queue_folder(tmp_path):
    from typer.testing import CliRunner

    from napari_fibsem.cli import app

    paths = [make_settings(tmp_path, "a"), make_settings(tmp_path, "b", fail=True)]
    schedule(paths, command=fake_command)
    run = CliRunner().invoke(app, ["events", "schedule", "--queue", str(tmp_path)])  # nothing left to run
    assert run.exit_code == 1, run.output  # a failed item is reported in the exit code
    assert "0 to run of 2" in run.output and "done     " in run.output and "failed   " in run.output
    assert len(records(tmp_path)) == 2
    none = CliRunner().invoke(app, ["events", "schedule"])
    assert none.exit_code == 2 and "--queue" in none.output
