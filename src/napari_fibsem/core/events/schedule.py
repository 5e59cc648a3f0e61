"""A resumable queue of event training runs (``napari-fibsem events schedule settings/*.yaml``).

The queue is one JSON file, ``events_queue.json``, in a folder (by default the first settings
file's folder). It lists each settings file with its state (pending, running, done, failed), start
and end time, output folder, exit code, error text and log file. Each run is a subprocess
(``python -m napari_fibsem.cli events train SETTINGS``) whose output goes to
``events_queue_logs/``; a failed run is recorded and the queue moves on.

Running the schedule again adds new settings files, skips finished ones and restarts runs left
"running" by a scheduler that died (their process is gone); failed ones run again with
``retry_failed``. With several GPUs, one run per GPU goes at a time (``CUDA_VISIBLE_DEVICES`` set
per subprocess); otherwise they run one after another.

Only one scheduler works on a queue at a time: it holds an OS lock on ``events_queue.lock``
(``filelock``: ``flock`` on POSIX, ``msvcrt.locking`` on Windows), which the OS drops when the
process dies however it dies, so a crashed scheduler never blocks the queue and a reused process id
cannot fake a live one. ``events_queue.owner.json`` beside it names the holder, only so that a
refused scheduler can say who holds the queue. The JSON is replaced atomically (``os.replace``)
after every change, so a crash never leaves it half written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from enum import Enum
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import yaml
from filelock import FileLock, Timeout

from napari_fibsem.core.errors import FibsemError
from napari_fibsem.core.io.atomic import atomic_write_text

QUEUE_FILE = "events_queue.json"
LOCK_FILE = "events_queue.lock"
OWNER_FILE = "events_queue.owner.json"
LOG_DIR = "events_queue_logs"
Command = Callable[[Path], Sequence[str]]
"""Builds the command line that trains one settings file."""


class State(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ScheduleError(FibsemError, RuntimeError):
    """The queue cannot be run (busy, unreadable, a settings file missing); the message says why."""


@dataclass
class QueueItem:
    settings: str  # absolute path of the settings YAML
    state: State = State.PENDING
    output: str | None = None
    started: str | None = None
    ended: str | None = None
    returncode: int | None = None
    error: str | None = None
    log: str | None = None
    gpu: str | None = None
    pid: int | None = None
    host: str | None = None
    attempts: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueueItem:
        known = {f.name for f in fields(cls)}
        item = cls(**{k: v for k, v in data.items() if k in known})
        item.state = State(item.state)
        return item


def train_command(settings: Path) -> list[str]:
    """``python -m napari_fibsem.cli events train SETTINGS`` with this interpreter (no shell, any OS)."""
    return [sys.executable, "-m", "napari_fibsem.cli", "events", "train", str(settings)]


def cuda_device_count() -> int:
    """GPUs torch sees here (0 without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def gpu_slots(gpus: int | None) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` values, one per concurrent run.

    ``None`` counts the GPUs: two or more give one slot each, one GPU or none a single slot that
    leaves the environment alone. ``gpus=N`` uses N GPUs (ids from an existing
    ``CUDA_VISIBLE_DEVICES``, else 0..N-1); ``gpus=0`` hides every GPU (CPU runs).
    """
    if gpus is not None and gpus < 0:
        raise ScheduleError(f"--gpus must be 0 or more, got {gpus}")
    n = cuda_device_count() if gpus is None else gpus
    if gpus is None and n < 2:
        return [None]
    if n == 0:
        return [""]
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    ids = visible if len(visible) >= n else [str(i) for i in range(n)]
    return list(ids[:n])


def read_queue(folder: str | Path) -> list[QueueItem]:
    """The queue in ``folder`` (empty when there is none yet)."""
    path = Path(folder) / QUEUE_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [QueueItem.from_dict(d) for d in data["items"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ScheduleError(f"{path}: cannot read the queue ({e})") from None


def _write_queue(folder: Path, items: list[QueueItem]) -> None:
    data = {"version": 1, "items": [{**asdict(i), "state": i.state.value} for i in items]}
    atomic_write_text(folder / QUEUE_FILE, json.dumps(data, indent=2) + "\n")


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this machine (POSIX and Windows)."""
    if not pid or pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, int(pid))  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return (
                bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
            )  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


@contextlib.contextmanager
def queue_lock(folder: Path) -> Iterator[None]:
    """Hold the queue's OS lock, or raise :class:`ScheduleError` naming the holder (no waiting)."""
    path, owner_path = folder / LOCK_FILE, folder / OWNER_FILE
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = json.loads(owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = {}  # the holder has not written it yet
        raise ScheduleError(
            f"{folder}: the queue is in use by process {owner.get('pid', '?')} on {owner.get('host', '?')} "
            f"since {owner.get('since', '?')} (another scheduler holds {path})"
        ) from None
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
        atomic_write_text(owner_path, json.dumps(me) + "\n")
        yield
    finally:
        for leftover in (owner_path, path):  # the lock file goes while still held (POSIX allows it):
            with contextlib.suppress(OSError):  # filelock sees a waiter's file unlinked and retries
                leftover.unlink()
        lock.release()


def settings_output(settings: Path) -> str | None:
    """The run folder a settings file trains into (its ``output``), or None when unreadable."""
    try:
        from napari_fibsem.core.events.settings import load_settings

        out = load_settings(settings).output
        return None if out is None else str(out)
    except Exception:  # noqa: BLE001 - a bad file fails in its own run, with the reason in its log
        pass
    try:  # unreadable as settings (e.g. its training set is missing): at least say where it aimed
        data = yaml.safe_load(settings.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    out = data.get("output") if isinstance(data, dict) else None
    return None if out is None else str(settings.parent / Path(str(out)).expanduser())


class _Run:
    """One pass over the queue: runs the items, one per slot at a time, and records each change."""

    def __init__(
        self, folder: Path, items: list[QueueItem], command: Command, write: Callable[[str], None]
    ) -> None:
        self.folder, self.items, self.command, self.write = folder, items, command, write
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.procs: dict[int, subprocess.Popen] = {}

    def save(self) -> None:
        _write_queue(self.folder, self.items)

    def run_item(self, index: int, slot: str | None, free: SimpleQueue) -> None:
        item = self.items[index]
        settings = Path(item.settings)
        try:
            if self.stopping.is_set():
                return
            log = self.folder / LOG_DIR / f"{index:03d}_{settings.stem}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with self.lock:
                item.state, item.started, item.ended, item.returncode, item.error = (
                    State.RUNNING,
                    _now(),
                    None,
                    None,
                    None,
                )
                item.attempts += 1
                item.gpu, item.host, item.log = slot, socket.gethostname(), str(log)
                item.output = settings_output(settings)
                self.save()
            where = f" on GPU {slot}" if slot else ""
            self.write(f"start {settings.name}{where} (log: {log})")
            env = dict(os.environ)
            if slot is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot
            rc, error = self._spawn(index, list(self.command(settings)), env, log)
            with self.lock:
                item.ended, item.returncode, item.pid = _now(), rc, None
                if self.stopping.is_set() and rc != 0:
                    item.state, item.error = State.PENDING, "interrupted: runs again on the next schedule"
                else:
                    item.state = State.DONE if rc == 0 else State.FAILED
                    item.error = error
                self.save()
            self.write(
                f"{item.state.value} {settings.name}"
                + (f": {item.error.splitlines()[-1]}" if item.error else "")
            )
        finally:
            free.put(slot)

    def _spawn(self, index: int, cmd: list[str], env: dict[str, str], log: Path) -> tuple[int, str | None]:
        with open(log, "ab") as fh:
            fh.write(f"--- {_now()} {' '.join(cmd)}\n".encode())
            fh.flush()
            try:
                proc = subprocess.Popen(
                    cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
                )
            except OSError as e:
                return -1, f"cannot start {cmd[0]}: {e}"
            with self.lock:
                self.items[index].pid = proc.pid
                self.procs[index] = proc
                self.save()
            rc = proc.wait()
        with self.lock:
            self.procs.pop(index, None)
        return rc, None if rc == 0 else f"exit code {rc}\n{_tail(log)}"

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            procs = list(self.procs.values())
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.terminate()


def _tail(path: Path, lines: int = 15, limit: int = 4000) -> str:
    try:
        text = path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def schedule(
    settings: Sequence[str | Path],
    queue_dir: str | Path | None = None,
    *,
    gpus: int | None = None,
    command: Command = train_command,
    retry_failed: bool = False,
    write: Callable[[str], None] | None = None,
) -> list[QueueItem]:
    """Add ``settings`` to the queue in ``queue_dir`` and run every unfinished item; the final items.

    Items run in queue order (the order they were first added). ``command(settings_path)`` gives
    the command line of one run (tests pass a stand-in); ``gpus`` as in :func:`gpu_slots`.
    """
    write = write or (lambda _msg: None)
    paths = [Path(s).resolve() for s in settings]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ScheduleError(f"settings file(s) not found: {', '.join(missing)}")
    if queue_dir is None and not paths:
        raise ScheduleError("give settings files, or --queue with the folder of an existing queue")
    folder = Path(queue_dir) if queue_dir is not None else paths[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    slots = gpu_slots(gpus)
    with queue_lock(folder):
        items = read_queue(folder)
        known = {i.settings for i in items}
        items += [QueueItem(str(p)) for p in dict.fromkeys(paths) if str(p) not in known]
        host = socket.gethostname()
        for item in items:
            if item.state is not State.RUNNING:
                continue
            if item.host == host and pid_alive(item.pid):
                write(f"still running as process {item.pid}, left alone: {item.settings}")
                continue
            item.state, item.error, item.pid = (
                State.PENDING,
                "interrupted (its process is gone); restarted",
                None,
            )
        todo = [
            i
            for i, item in enumerate(items)
            if item.state is State.PENDING or (retry_failed and item.state is State.FAILED)
        ]
        run = _Run(folder, items, command, write)
        run.save()
        write(f"queue {folder / QUEUE_FILE}: {len(todo)} to run of {len(items)}, {len(slots)} at a time")
        free: SimpleQueue = SimpleQueue()
        for slot in slots:
            free.put(slot)
        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            try:
                futures = []
                for index in todo:
                    slot = _take(free, run)
                    if run.stopping.is_set():
                        break
                    futures.append(pool.submit(run.run_item, index, slot, free))
                for f in futures:
                    while not f.done():  # short waits keep Ctrl-C responsive on every platform
                        with contextlib.suppress(TimeoutError):
                            f.result(timeout=0.5)
                    f.result()
            except KeyboardInterrupt:
                write("interrupted: stopping the running training(s); they run again on the next schedule")
                run.stop()
                raise
        return items


def _take(free: SimpleQueue, run: _Run) -> str | None:
    """The next free slot (waits for a run to end)."""
    from queue import Empty

    while True:
        try:
            return free.get(timeout=0.5)
        except Empty:
            if run.stopping.is_set():
                return None
