import numpy as np
import pytest

from napari_fibsem.core.io.classes import ClassMap, ClassMapError


def test_default_is_autolamella():
    cm = ClassMap.default()
    assert cm.names == ["background", "lamella", "manipulator", "landing_post", "copper_adaptor", "volume_block"]
    assert cm.id_of("landing_post") == 3
    assert cm.num_classes == 6


def test_yaml_round_trip(tmp_path):
    cm = ClassMap.from_names(["background", "cell", "ice"])
    cm.save(tmp_path / "classes.yaml")
    back = ClassMap.load(tmp_path / "classes.yaml")
    assert back == cm
    assert ClassMap.for_folder(tmp_path) == cm
    assert ClassMap.for_folder(tmp_path / "nowhere") == ClassMap.default()


def test_gapped_ids_and_short_form(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("classes:\n  0: background\n  7: {name: needle, color: '#123456'}\n")
    cm = ClassMap.load(p)
    assert cm.ids == [0, 7] and cm.num_classes == 8 and cm[7].rgb() == pytest.approx((0x12 / 255, 0x34 / 255, 0x56 / 255))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("classes: [a, b]", "'classes' key"),
        ("classes:\n  x: background\n", "not an integer"),
        ("classes:\n  0: {name: a, color: red}\n", "not #rrggbb"),
        ("classes:\n  0: a\n  1: a\n", "duplicate class names"),
        ("classes:\n  300: a\n", "outside 0..255"),
        ("classes:\n  0: {name: a, colour: '#000000'}\n", "unknown keys"),
        ("classes: {0: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_names_file(tmp_path, text, problem):
    p = tmp_path / "classes.yaml"
    p.write_text(text)
    with pytest.raises(ClassMapError) as e:
        ClassMap.load(p)
    assert str(p) in str(e.value) and problem in str(e.value)


def test_check_mask_names_source_and_values():
    cm = ClassMap.default()
    cm.check_mask(np.array([[0, 1], [5, 2]], np.uint8))
    with pytest.raises(ClassMapError, match=r"lab\.tif: label values \[7, 9\]"):
        cm.check_mask(np.array([[0, 7], [9, 1]], np.uint8), "lab.tif")
