"""Example: make a synthetic FIB-SEM dataset and load it for training.

    python examples/synthetic_dataset.py --out outputs/example_dataset --n 20 --size 512x768

Shows the core API a script uses: write a dataset folder, discover and validate its pairs, split
it with a seed, and batch it with a torch DataLoader.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.data.dataset import SegmentationDataset, discover, split, validate
from napari_fibsem.core.synthetic.dataset import write_dataset


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/example_dataset"))
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--size", default="512x768", help="HEIGHTxWIDTH")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))

    print(write_dataset(args.out, n=args.n, size=(h, w), seed=args.seed))
    index = discover(args.out)
    class_map = ClassMap.for_folder(args.out)
    validate(index, class_map)
    train, val = split(index.labelled, (0.8, 0.2), seed=args.seed)
    loader = torch.utils.data.DataLoader(SegmentationDataset(train, class_map), batch_size=2, shuffle=True)
    images, masks = next(iter(loader))
    present = sorted(int(c) for c in torch.unique(masks))
    print(f"{len(train)} train / {len(val)} val images; one batch: images {tuple(images.shape)}, "
          f"masks {tuple(masks.shape)}, classes present {[class_map[c].name for c in present]}")


if __name__ == "__main__":
    main()
