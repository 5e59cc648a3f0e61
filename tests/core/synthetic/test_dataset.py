import numpy as np
import pytest

from napari_fibsem.core.data.dataset import discover, validate
from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.io.imageio import read_image, read_labels
from napari_fibsem.core.io.keypoints import read_keypoints
from napari_fibsem.core.synthetic.dataset import write_dataset


def test_dataset_folder_is_complete_and_reproducible(tmp_path):
    s = write_dataset(tmp_path / "a", n=4, size=(96, 128), seed=5)
    assert s.n == 4 and sum(s.beams.values()) == 4
    index = discover(tmp_path / "a")
    assert len(index.labelled) == 4 and not index.unlabelled
    validate(index, ClassMap.for_folder(tmp_path / "a"))
    points = read_keypoints(tmp_path / "a" / "keypoints.csv")
    assert len(points) == s.n_keypoints and {p.filename for p in points} == {x.name for x in index.samples}
    for p in points:
        if p.feature.startswith("Lamella"):
            mask = read_labels(tmp_path / "a" / "labels" / p.filename)
            y, x = int(round(p.y)), int(round(p.x))
            assert mask[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].max() == 1
    img = read_image(index.samples[0].image)
    assert img.metadata.pixel_size == points[0].pixel_size and img.metadata.beam_type in ("ion", "electron")
    write_dataset(tmp_path / "b", n=4, size=(96, 128), seed=5)
    for x in index.samples:
        assert np.array_equal(read_image(x.image).data, read_image(tmp_path / "b" / x.name).data)
    assert (tmp_path / "a" / "keypoints.csv").read_bytes() == (tmp_path / "b" / "keypoints.csv").read_bytes()


def test_refuses_non_empty_folder_and_leaves_it_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(tmp_path / "mine", n=2, size=(64, 64))
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no temporary folder left behind"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    import napari_fibsem.core.synthetic.dataset as sd

    calls = {"n": 0}
    real = sd.generate_scene

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sd, "generate_scene", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "d", n=3, size=(64, 64))
    assert list(tmp_path.iterdir()) == []
