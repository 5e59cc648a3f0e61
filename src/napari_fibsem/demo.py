"""The end-to-end demo: what the README's main command runs.

Headless (no Qt import) so it runs in CI and on servers; later steps (training, evaluation, the
supervised closed loop) append themselves to :func:`run_demo` as they land.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from napari_fibsem.core.classes import ClassMap
from napari_fibsem.core.dataset import discover, validate
from napari_fibsem.core.synthetic_dataset import write_dataset


@dataclass
class DemoResult:
    out: Path
    dataset: Path
    lines: list[str] = field(default_factory=list)

    def report(self) -> str:
        return "\n".join([f"demo outputs in {self.out.resolve()}", *self.lines])


def run_demo(out: str | Path, n: int = 12, size: tuple[int, int] = (1024, 1536), seed: int = 0) -> DemoResult:
    """Write a synthetic dataset under ``out`` and check it as a user's dataset would be checked."""
    out = Path(out)
    if out.exists():
        if not (out / ".napari-fibsem-demo").exists():
            raise ValueError(f"{out}: exists and is not a previous demo output; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".napari-fibsem-demo").touch()
    result = DemoResult(out, out / "dataset")
    summary = write_dataset(result.dataset, n=n, size=size, seed=seed, beam="mixed")
    result.lines.append(f"1. synthetic dataset: {summary}")
    index = discover(result.dataset)
    class_map = ClassMap.for_folder(result.dataset)
    validate(index, class_map)
    result.lines.append(f"2. dataset check: {index.summary()}; labels valid against {class_map.names}")
    return result
