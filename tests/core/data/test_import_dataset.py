"""Importing HuggingFace parquet shards (AutoLamella layout) as dataset folders.

The tests write their own tiny shards in the layout ``datasets`` uses: ``image`` and
``annotation`` columns of ``{bytes, path}`` structs holding PNG bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from napari_fibsem.cli import app  # noqa: E402
from napari_fibsem.core.data.dataset import discover, validate  # noqa: E402
from napari_fibsem.core.data.import_dataset import (  # noqa: E402
    SUMMARY_FILE,
    ImportDatasetError,
    find_shards,
    import_dataset,
)
from napari_fibsem.core.io.classes import ClassMap  # noqa: E402
from napari_fibsem.core.io.imageio import read_image, read_labels  # noqa: E402

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def sample(seed: int, shape=(24, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    labels = rng.integers(0, 6, shape, dtype=np.uint8)
    return image, labels


def write_shard(path: Path, rows: list[tuple], paths: bool = True) -> None:
    """rows: (image array or bytes, label array or bytes)."""

    def cell(x, i, kind):
        data = x if isinstance(x, bytes) else png(x)
        return {"bytes": data, "path": f"{path.stem}_{kind}_{i}.png" if paths else None}

    table = pa.table(
        {
            "image": pa.array([cell(im, i, "img") for i, (im, _) in enumerate(rows)], type=IMAGE_STRUCT),
            "annotation": pa.array([cell(lb, i, "ann") for i, (_, lb) in enumerate(rows)], type=IMAGE_STRUCT),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)


@pytest.fixture
def hf_root(tmp_path) -> tuple[Path, dict]:
    """Two configs, train (two shards for waffle) and test, different image sizes."""
    root = tmp_path / "autolamella"
    data = {
        ("waffle", "train"): [sample(i) for i in range(5)],
        ("waffle", "test"): [sample(10 + i, (32, 16)) for i in range(2)],
        ("liftout", "train"): [sample(20 + i, (16, 16)) for i in range(3)],
    }
    write_shard(root / "waffle" / "train-00000-of-00002.parquet", data["waffle", "train"][:3])
    write_shard(root / "waffle" / "train-00001-of-00002.parquet", data["waffle", "train"][3:])
    write_shard(root / "waffle" / "test-00000-of-00001.parquet", data["waffle", "test"])
    write_shard(root / "liftout" / "train-00000-of-00001.parquet", data["liftout", "train"], paths=False)
    return root, data


def test_import_round_trips_pixels_and_validates(hf_root, tmp_path):
    root, data = hf_root
    progress = []
    summary = import_dataset(root, tmp_path / "out", on_progress=lambda d, t: progress.append((d, t)))
    assert summary.counts == {("waffle", "train"): 5, ("waffle", "test"): 2, ("liftout", "train"): 3}
    assert progress[-1] == (10, 10) and len(progress) == 10
    for (config, split), rows in data.items():
        folder = tmp_path / "out" / config / split
        index = discover(folder)
        assert len(index.labelled) == len(rows) and not index.unlabelled
        validate(index, ClassMap.for_folder(folder))
        assert ClassMap.for_folder(folder) == ClassMap.default()
        for s, (image, labels) in zip(index.samples, rows):
            got = read_image(s.image)
            np.testing.assert_array_equal(got.data, image)
            np.testing.assert_array_equal(read_labels(s.label), labels)
            assert got.metadata.extra["config"] == config
    # names: stored path when present (in shard order), else <config>_<split>_<index>
    assert (tmp_path / "out/waffle/train/train-00001-of-00002_img_0.tif").is_file()
    assert sorted(p.name for p in (tmp_path / "out/liftout/train").glob("*.tif")) == [
        f"liftout_train_{i:05d}.tif" for i in range(3)
    ]
    assert (tmp_path / "out" / SUMMARY_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_select_configs_and_splits_and_single_file(hf_root, tmp_path):
    root, data = hf_root
    s = import_dataset(root, tmp_path / "a", configs=["waffle"], splits=["test"])
    assert s.counts == {("waffle", "test"): 2}
    with pytest.raises(ImportDatasetError, match="no config named nope; available: liftout, waffle"):
        import_dataset(root, tmp_path / "b", configs=["nope"])
    s = import_dataset(root / "liftout" / "train-00000-of-00001.parquet", tmp_path / "c")
    assert s.counts == {("liftout", "train"): 3}


def test_layouts_data_folder_hub_cache_and_converted(tmp_path):
    rows = [sample(0, (16, 16))]
    write_shard(tmp_path / "r1/data/serial-liftout/train-00000-of-00001-abc123.parquet", rows)
    write_shard(tmp_path / "r1/data/test-00000-of-00001.parquet", rows)
    write_shard(tmp_path / "r2/waffle/test/0000.parquet", rows)
    repo = tmp_path / "datasets--someone--autolamella"
    write_shard(repo / "snapshots/0123abcd/liftout/test-00000-of-00001.parquet", rows)
    (repo / "refs").mkdir()
    (repo / "refs/main").write_text("0123abcd")
    key = lambda source: sorted((s.config, s.split) for s in find_shards(source))  # noqa: E731
    assert key(tmp_path / "r1") == [("default", "test"), ("serial-liftout", "train")]
    assert key(tmp_path / "r2") == [("waffle", "test")]
    assert key(repo) == [("liftout", "test")]


def test_gray_rgb_converted_and_colour_refused(tmp_path):
    image, labels = sample(3)
    rgb = np.repeat(image[..., None], 3, axis=-1)
    write_shard(
        tmp_path / "src/waffle/train-00000-of-00001.parquet", [(rgb, np.repeat(labels[..., None], 3, -1))]
    )
    summary = import_dataset(tmp_path / "src", tmp_path / "out")
    assert summary.converted_rgb == 1
    (f,) = (tmp_path / "out/waffle/train").glob("*.tif")
    np.testing.assert_array_equal(read_image(f).data, image)
    np.testing.assert_array_equal(read_labels(f.parent / "labels" / f.name), labels)

    rgb[0, 0, 1] ^= 1
    write_shard(tmp_path / "colour/waffle/train-00000-of-00001.parquet", [(rgb, labels)])
    with pytest.raises(
        ImportDatasetError,
        match=r"train-00000-of-00001.parquet row 0 \(train-00000-of-00001_img_0.png\): the image is a colour image",
    ):
        import_dataset(tmp_path / "colour", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_sixteen_bit_and_tiff_bytes(tmp_path):
    import tifffile

    image = np.random.default_rng(0).integers(0, 65536, (16, 24), dtype=np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    labels = np.zeros((16, 24), np.uint8)
    write_shard(
        tmp_path / "src/waffle/train-00000-of-00001.parquet", [(buf.getvalue(), labels), (image, labels)]
    )
    import_dataset(tmp_path / "src", tmp_path / "out")
    files = sorted((tmp_path / "out/waffle/train").glob("*.tif"))
    assert len(files) == 2
    for f in files:
        got = read_image(f).data
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, image)


def test_bad_annotation_values_name_the_row_and_write_nothing(hf_root, tmp_path):
    root, _ = hf_root
    image, labels = sample(0)
    labels[3, 3] = 9
    write_shard(root / "liftout" / "test-00000-of-00001.parquet", [sample(1), (image, labels)])
    out = tmp_path / "out"
    with pytest.raises(
        ImportDatasetError,
        match=r"liftout.test-00000-of-00001.parquet row 1 \(test-00000-of-00001_img_1.png\): label values \[9\]",
    ):
        import_dataset(root, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp folder cleaned up


def test_non_empty_out_refused_unless_overwrite(hf_root, tmp_path):
    root, _ = hf_root
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ImportDatasetError, match="not empty"):
        import_dataset(root, out)
    with pytest.raises(ImportDatasetError, match="not a previous import"):
        import_dataset(root, out, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me"

    out2 = tmp_path / "out2"
    import_dataset(root, out2, configs=["liftout"])
    summary = import_dataset(root, out2, configs=["waffle"], overwrite=True)
    assert summary.total == 7
    assert sorted(p.name for p in out2.iterdir() if p.is_dir()) == ["waffle"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_malformed_parquet_named(tmp_path):
    bad = tmp_path / "src/waffle/train-00000-of-00001.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(
        ImportDatasetError, match=r"train-00000-of-00001.parquet: not a readable parquet file"
    ):
        import_dataset(tmp_path / "src", tmp_path / "out")
    pq.write_table(pa.table({"pixels": [b"x"], "annotation": [b"y"]}), bad)
    with pytest.raises(
        ImportDatasetError,
        match=r"train-00000-of-00001.parquet: no 'image' column \(columns: \['pixels', 'annotation'\]\)",
    ):
        import_dataset(tmp_path / "src", tmp_path / "out")
    pq.write_table(pa.table({"image": [b"not a png"], "annotation": [b"y"]}), bad)
    with pytest.raises(ImportDatasetError, match=r"row 0: cannot decode the image bytes"):
        import_dataset(tmp_path / "src", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportDatasetError, match="no .parquet files"):
        import_dataset(tmp_path / "empty", tmp_path / "x")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


def test_cli_import_dataset(hf_root, tmp_path):
    root, _ = hf_root
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["import-dataset", str(root), "--out", str(out), "--config", "waffle", "--split", "train"]
    )
    assert result.exit_code == 0, result.output
    assert "imported 5 labelled images" in result.output
    assert len(discover(out / "waffle" / "train").labelled) == 5
    result = runner.invoke(app, ["import-dataset", str(root), "--out", str(out)])
    assert result.exit_code == 2 and "not empty" in result.output
    result = runner.invoke(app, ["import-dataset", str(root), "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "imported 10" in result.output
