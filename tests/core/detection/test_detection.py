"""Feature detection from masks: accuracy against the generator's keypoints and the edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_fibsem.core.detection import (
    CATALOGUE,
    NotFound,
    default_min_size,
    detect_features,
    draw_features,
    get_feature,
)
from napari_fibsem.core.io.classes import ClassInfo, ClassMap
from napari_fibsem.core.io.imageio import FibsemImage, ImageMetadata
from napari_fibsem.core.synthetic.scene import KEYPOINT_FEATURES, generate_scene

LAMELLA, NEEDLE, POST, BLOCK = 1, 2, 3, 5


def test_catalogue_covers_autolamella_features_with_class_names_and_colours():
    wanted = set(KEYPOINT_FEATURES) | {"NeedleTipBottom", "CoreFeature"}
    assert wanted <= set(CATALOGUE)
    default_names = set(ClassMap.default().names) | {"*"}
    for spec in CATALOGUE.values():
        assert spec.color.startswith("#") and len(spec.color) == 7
        assert spec.class_name is None or spec.class_name in default_names
    with pytest.raises(KeyError, match="known features"):
        get_feature("LamelaCentre")


def test_every_synthetic_keypoint_is_found_within_2px():
    hits = total = 0
    for seed in range(12):
        for side in ("left", "right", "top"):
            scene = generate_scene(
                seed,
                size=(192, 288),
                needle_side=side,
                landing_post=seed % 2 == 0,
                copper_adaptor=seed % 3 == 0,
                volume_block=seed % 3 == 1,
                distractors=3,
            )
            found = detect_features(scene.image, mask=scene.mask, pixel_size=scene.pixel_size)
            for name, (x, y) in scene.keypoints.items():
                total += 1
                px = found[name].px
                hits += px is not None and np.hypot(px[0] - x, px[1] - y) <= 2
    # every feature the 36 scenes contain (a few hundred points) lands within 2 px
    assert total > 300
    assert hits / total == 1.0


def test_full_size_scene_with_all_classes():
    scene = generate_scene(3, landing_post=True, copper_adaptor=True, volume_block=True)
    found = detect_features(FibsemImage(scene.image, ImageMetadata(pixel_size=scene.pixel_size)), mask=scene.mask)
    assert found.pixel_size == scene.pixel_size
    for name, (x, y) in scene.keypoints.items():
        assert np.hypot(found[name].px[0] - x, found[name].px[1] - y) <= 2, name
    assert not found.missing


def _needle(shape, side, length=150, half=12):
    """A wedge entering from ``side``, tip ``length`` px in; returns the mask and the tip."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    if side in ("left", "right"):
        t = xx if side == "left" else (w - 1 - xx)
        width = half * (1 - t / length)
        m = (t <= length) & (np.abs(yy - h / 2) <= np.maximum(width, 0.5))
        tip_x = length if side == "left" else w - 1 - length
        return m, (tip_x, None)
    t = yy if side == "top" else (h - 1 - yy)
    width = half * (1 - t / length)
    m = (t <= length) & (np.abs(xx - w / 2) <= np.maximum(width, 0.5))
    return m, (None, length if side == "top" else h - 1 - length)


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_needle_tip_points_away_from_the_entry_border(side):
    mask = np.zeros((300, 400), np.uint8)
    m, (tx, ty) = _needle(mask.shape, side)
    mask[m] = NEEDLE
    tip = detect_features(None, mask=mask, pixel_size=1e-8, features=["NeedleTip"])["NeedleTip"].px
    if tx is not None:
        assert tip[0] == pytest.approx(tx) and tip[1] == pytest.approx(150, abs=1)
    else:
        assert tip[1] == pytest.approx(ty) and tip[0] == pytest.approx(200, abs=1)


def test_needle_inside_the_frame_uses_the_nearest_border_and_tip_bottom_is_lowest():
    mask = np.zeros((300, 400), np.uint8)
    m, _ = _needle((300, 400), "right")
    mask[:, :-20][m[:, 20:]] = NEEDLE  # shifted 20 px away from the right border
    mask[200:230, 100:104] = 0
    found = detect_features(None, mask=mask, pixel_size=1e-8, features=["NeedleTip", "NeedleTipBottom"])
    assert found["NeedleTip"].px[0] == pytest.approx(400 - 1 - 150 - 20)
    lowest_row = np.flatnonzero((mask == NEEDLE).any(axis=1))[-1]
    assert found["NeedleTipBottom"].px[1] == lowest_row


def test_small_blobs_are_ignored_and_filter_picks_the_object_near_the_point():
    mask = np.zeros((400, 600), np.uint8)
    mask[180:220, 250:350] = LAMELLA  # the lamella near the centre
    mask[10:14, 10:14] = LAMELLA  # 16 px of noise, far out on the left
    mask[300:340, 480:560] = LAMELLA  # a second, large lamella-like object
    min_size = default_min_size(mask.shape)
    assert 16 < min_size < 40 * 80
    found = detect_features(None, mask=mask, pixel_size=1e-8, features=["LamellaLeftEdge", "LamellaCentre"])
    assert found["LamellaLeftEdge"].px == (250, 199.5)
    assert found["LamellaCentre"].px == pytest.approx((299.5, 199.5))
    near = detect_features(None, mask=mask, pixel_size=1e-8, point=(500, 320), features=["LamellaCentre"])
    assert near["LamellaCentre"].px == pytest.approx((519.5, 319.5))
    largest = detect_features(None, mask=mask, pixel_size=1e-8, filter=False, features=["LamellaCentre"])
    assert largest["LamellaCentre"].px == pytest.approx((299.5, 199.5))
    only_noise = np.where(mask[:100, :100] > 0, LAMELLA, 0).astype(np.uint8)
    lost = detect_features(None, mask=only_noise, pixel_size=1e-8, features=["LamellaCentre"])["LamellaCentre"]
    assert not lost.found and "largest: 16 px" in lost.reason


def test_a_thin_spur_does_not_move_an_edge():
    mask = np.zeros((200, 300), np.uint8)
    mask[80:120, 100:200] = LAMELLA
    mask[100, 60:100] = LAMELLA  # one-pixel spur sticking out to the left
    found = detect_features(None, mask=mask, pixel_size=1e-8, features=["LamellaLeftEdge", "LamellaRightEdge"])
    assert found["LamellaLeftEdge"].px == (100, 99.5)
    assert found["LamellaRightEdge"].px == (199, 99.5)


def test_landing_post_is_the_post_pixel_closest_to_the_reference_point():
    mask = np.zeros((300, 400), np.uint8)
    mask[50:250, 300:340] = POST
    found = detect_features(None, mask=mask, pixel_size=1e-8, features=["LandingPost"])
    assert found["LandingPost"].px == (300, 149.5)  # image centre (199.5, 149.5): left face, same row
    low = detect_features(None, mask=mask, pixel_size=1e-8, point=(320, 290), features=["LandingPost"])
    assert low["LandingPost"].px == (320, 249)


def test_volume_block_corners_and_edges_mean_what_they_say():
    mask = np.zeros((200, 300), np.uint8)
    mask[40:90, 100:220] = BLOCK
    f = detect_features(None, mask=mask, pixel_size=1e-8, features=[n for n in CATALOGUE if n.startswith("VolumeBlock")])
    assert f["VolumeBlockTopLeftCorner"].px == (100, 40)
    assert f["VolumeBlockTopRightCorner"].px == (219, 40)
    assert f["VolumeBlockBottomLeftCorner"].px == (100, 89)
    assert f["VolumeBlockBottomRightCorner"].px == (219, 89)
    assert f["VolumeBlockTopEdge"].px == (159.5, 40)
    assert f["VolumeBlockBottomEdge"].px == (159.5, 89)


def test_empty_mask_gives_not_found_with_reasons_never_zero():
    found = detect_features(None, mask=np.zeros((64, 96), np.uint8), pixel_size=1e-8)
    assert found.found == ["ImageCentre"]
    assert found["ImageCentre"].px == (47.5, 31.5)
    for name, reason in found.missing.items():
        assert found[name].px is None
        assert "pixels in the mask" in reason, name
    with pytest.raises(NotFound, match="LamellaCentre was not found"):
        found.offset_m("LamellaCentre")


def test_metre_offsets_use_microscope_convention():
    mask = np.zeros((101, 201), np.uint8)  # centre pixel (100, 50)
    mask[20:31, 140:151] = LAMELLA  # centred at (145, 25): right of and above the centre
    found = detect_features(None, mask=mask, pixel_size=2e-8, features=["ImageCentre", "LamellaCentre"])
    dx, dy = found.offset_m("LamellaCentre")
    assert dx == pytest.approx(45 * 2e-8) and dy == pytest.approx(25 * 2e-8)
    back = found.offset_between_m("LamellaCentre", "ImageCentre")
    assert back == pytest.approx((-dx, -dy))
    moved = found.with_point("LamellaCentre", 100, 80)  # a person drags it below the centre
    assert moved.offset_m("LamellaCentre") == pytest.approx((0.0, -30 * 2e-8))
    assert found["LamellaCentre"].px == (145, 25)  # the original is untouched


def test_pixel_size_comes_from_metadata_or_is_an_explicit_error():
    mask = np.zeros((64, 64), np.uint8)
    image = FibsemImage(np.zeros((64, 64), np.uint8), ImageMetadata(pixel_size=5e-9))
    assert detect_features(image, mask=mask).pixel_size == 5e-9
    assert detect_features(image, mask=mask, pixel_size=1e-8).pixel_size == 1e-8
    with pytest.raises(ValueError, match="no pixel size"):
        detect_features(np.zeros((64, 64), np.uint8), mask=mask)
    with pytest.raises(ValueError, match="positive"):
        detect_features(None, mask=mask, pixel_size=-1.0)
    with pytest.raises(ValueError, match="does not match image shape"):
        detect_features(image, mask=np.zeros((32, 64), np.uint8))
    with pytest.raises(ValueError, match="needs a model or a mask"):
        detect_features(image)


def test_classes_are_read_by_name_from_the_class_map():
    cmap = ClassMap({0: ClassInfo("background", "#000000"), 7: ClassInfo("lamella", "#ff0000")})
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 20:80] = 7
    found = detect_features(None, mask=mask, pixel_size=1e-8, class_map=cmap)
    assert found["LamellaCentre"].px == pytest.approx((49.5, 49.5))
    assert "not in the class map" in found.missing["NeedleTip"]


def test_detection_runs_the_model_when_no_mask_is_given():
    from napari_fibsem.core.models import create_model

    model = create_model("Unet", "resnet18", device="cpu", encoder_depth=3, decoder_channels=(32, 16, 8))
    scene = generate_scene(0, size=(96, 128))
    found = detect_features(scene.image, model, pixel_size=scene.pixel_size, min_size=1)
    assert np.array_equal(found.mask, model.predict(scene.image).mask)
    present = {model.class_map[c].name for c in np.unique(found.mask) if c}
    for f in found:
        if f.class_name in present:
            assert f.found, f.name
    assert found.source == "smp"


def test_draw_features_marks_found_points_in_their_colour():
    scene = generate_scene(2, size=(128, 192), needle_side="left")
    found = detect_features(scene.image, mask=scene.mask, pixel_size=scene.pixel_size)
    pic = draw_features(scene.image, found, truth=scene.keypoints)
    assert pic.shape == (*scene.image.shape, 3) and pic.dtype == np.uint8
    for name in ("LamellaCentre", "NeedleTip"):
        spec = CATALOGUE[name]
        colour = np.array([int(spec.color[i : i + 2], 16) for i in (1, 3, 5)])
        x, y = (round(v) for v in found[name].px)
        window = pic[max(y - 12, 0) : y + 13, max(x - 12, 0) : x + 13].reshape(-1, 3)
        assert (np.abs(window.astype(int) - colour).sum(axis=1) == 0).any(), name
    keypoints = found.to_keypoints("a.tif")
    assert {k.feature for k in keypoints} == set(found.found)
