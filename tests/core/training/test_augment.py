"""Augmentation keeps image and mask aligned, keeps dtypes and class ids, and is reproducible per seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_fibsem.core.training import AugmentConfig, EMAugment

STEP = 40  # image = mask * STEP: the image's pixel values encode the mask
GEOMETRY_ONLY = dict(autocontrast=0, equalize=0, blur=0, brightness=0, contrast=0, noise=0)


def blob_mask(shape=(90, 120), seed=0, classes=6) -> np.ndarray:
    """Smooth random regions of several classes (like label masks, unlike white noise)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((classes, *shape)), sigma=(0, 6, 6))
    return np.argmax(field, axis=0).astype(np.uint8)


def encoded_pair(shape=(90, 120), seed=0) -> tuple[np.ndarray, np.ndarray]:
    mask = blob_mask(shape, seed)
    return (mask * STEP).astype(np.uint8), mask


@pytest.mark.parametrize("seed", range(6))
def test_crops_flips_and_quarter_turns_keep_pixels_exactly_aligned(seed):
    image, mask = encoded_pair()
    aug = EMAugment(AugmentConfig(rotate=0, scale=(1, 1), rotate90=True, **GEOMETRY_ONLY), crop_size=(64, 48))
    out_img, out_mask = aug(image, mask, np.random.default_rng(seed))
    assert out_img.shape == out_mask.shape == (64, 48)
    assert out_img.dtype == np.uint8 and out_mask.dtype == np.uint8
    np.testing.assert_array_equal(out_img, out_mask * STEP)


def test_rotation_and_zoom_keep_masks_aligned():
    """Two classes, image = 200 * mask: the bilinear image thresholded at half height must match the
    nearest-neighbour mask up to a few ambiguous border pixels; a one-pixel shift would not."""
    rng = np.random.default_rng(0)
    mask = (ndimage.gaussian_filter(rng.random((90, 120)), 6) > 0.5).astype(np.uint8)
    image = (mask * 200).astype(np.uint8)
    aug = EMAugment(AugmentConfig(rotate=30, scale=(0.8, 1.25), **GEOMETRY_ONLY), crop_size=(64, 64))
    resampled = 0
    for seed in range(12):
        out_img, out_mask = aug(image, mask, np.random.default_rng(seed))
        assert set(np.unique(out_mask)) <= {0, 1}  # nearest neighbour: no invented class ids
        assert np.mean((out_img >= 100) == out_mask) > 0.99, seed
        if np.any(out_img % 200):  # values between the two: this sample was rotated/zoomed
            resampled += 1
            assert np.mean((out_img >= 100) == np.roll(out_mask, 1, axis=1)) < 0.98  # the check can fail
    assert resampled >= 3
    multi_img, multi_mask = encoded_pair()
    out_img, out_mask = aug(multi_img, multi_mask, np.random.default_rng(0))
    assert set(np.unique(out_mask)) <= set(np.unique(multi_mask))


def test_small_images_are_padded_to_the_crop_consistently():
    image, mask = encoded_pair(shape=(40, 30), seed=3)
    out_img, out_mask = EMAugment(AugmentConfig(enabled=False), crop_size=(64, 64))(
        image, mask, np.random.default_rng(0)
    )
    assert out_img.shape == (64, 64)
    np.testing.assert_array_equal(out_img, out_mask * STEP)


def test_same_seed_same_result_other_seed_other_result():
    image, mask = encoded_pair()
    image = (image.astype(np.uint16) * 200 + 50).astype(np.uint16)  # a 16-bit frame
    aug = EMAugment(AugmentConfig(noise=0.02, autocontrast=0.5, equalize=0.5, blur=0.5), crop_size=(48, 48))
    a = aug(image, mask, np.random.default_rng(7))
    b = aug(image, mask, np.random.default_rng(7))
    c = aug(image, mask, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint16


def test_intensity_changes_touch_the_image_only():
    image, mask = encoded_pair()
    image = (image + 20).astype(np.uint8)
    aug = EMAugment(
        AugmentConfig(
            flip=False,
            rotate=0,
            scale=(1, 1),
            autocontrast=1,
            equalize=1,
            blur=1,
            brightness=0.2,
            contrast=0.2,
            noise=0.05,
        )
    )
    seen_changes = 0
    for seed in range(4):
        out_img, out_mask = aug(image, mask, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_mask, mask)
        assert out_img.dtype == np.uint8 and out_img.shape == image.shape
        seen_changes += not np.array_equal(out_img, image)
        # the structure survives: bright classes stay brighter than dark ones on average
        assert out_img[mask == 5].mean() > out_img[mask == 0].mean()
    assert seen_changes == 4


def test_disabled_augmentation_without_crop_is_identity():
    image, mask = encoded_pair()
    out_img, out_mask = EMAugment(AugmentConfig(enabled=False))(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out_img, image)
    np.testing.assert_array_equal(out_mask, mask)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same 2D shape"):
        EMAugment()(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), np.random.default_rng(0))


# -- foreground-aware crops --------------------------------------------------------------------------
def rare_object_pair(shape=(200, 300)) -> tuple[np.ndarray, np.ndarray]:
    """A large class-3 bar and a tiny class-5 square: uniform 48x48 crops rarely see the square."""
    mask = np.zeros(shape, np.uint8)
    mask[:, 200:260] = 3
    mask[20:26, 30:36] = 5
    return (mask * STEP).astype(np.uint8), mask


@pytest.mark.parametrize("geometry", ["crop", "rotate", "quarter-turns"])
def test_foreground_crops_show_rare_classes_and_stay_aligned(geometry):
    """With ``foreground: 1`` every crop holds some foreground and a rare class is drawn as often as a
    common one (it appears in ~half the crops vs ~1% for uniform crops), with image and mask aligned."""
    image, mask = rare_object_pair()
    extra = {"crop": dict(rotate=0, scale=(1, 1)), "rotate": dict(rotate=30, scale=(0.9, 1.1)),
             "quarter-turns": dict(rotate=0, scale=(1, 1), rotate90=True)}[geometry]  # fmt: skip
    counts = {}
    for fg in (0.0, 1.0):
        aug = EMAugment(AugmentConfig(foreground=fg, flip=True, **extra, **GEOMETRY_ONLY), crop_size=(48, 48))
        rng = np.random.default_rng(0)
        seen = []
        for _ in range(200):
            img, msk = aug(image, mask, rng)
            assert msk.shape == (48, 48) and img.dtype == np.uint8
            if geometry != "rotate":  # exact pixels without resampling
                np.testing.assert_array_equal(img, msk * STEP)
            seen.append(set(np.unique(msk).tolist()))
        counts[fg] = (sum(5 in s for s in seen), sum(len(s - {0}) > 0 for s in seen))
    rare_uniform, _ = counts[0.0]
    rare_fg, any_fg = counts[1.0]
    assert rare_uniform <= 15 and rare_fg >= 70, counts
    assert any_fg == 200, counts


def test_foreground_crops_on_background_only_masks_fall_back_to_uniform():
    mask = np.zeros((60, 80), np.uint8)
    aug = EMAugment(AugmentConfig(foreground=1.0, **GEOMETRY_ONLY), crop_size=(32, 32))
    img, msk = aug((mask + 7).astype(np.uint8), mask, np.random.default_rng(0))
    assert msk.shape == (32, 32) and not msk.any() and (img == 7).all()


def test_foreground_weights_favour_a_class_and_are_validated():
    image, mask = rare_object_pair()
    crop = dict(rotate=0, scale=(1, 1), flip=False)
    rare = {}
    for weights in (None, [0, 1, 1, 1, 1, 9]):
        aug = EMAugment(
            AugmentConfig(foreground=1.0, foreground_weights=weights, **crop, **GEOMETRY_ONLY),
            crop_size=(48, 48),
        )
        rng = np.random.default_rng(0)
        rare[str(weights)] = sum(5 in aug(image, mask, rng)[1] for _ in range(200))
    assert 70 <= rare["None"] <= 130 and rare["[0, 1, 1, 1, 1, 9]"] >= 170, rare
    # all present classes at weight 0: back to a uniform draw, never an error
    only_zero = EMAugment(
        AugmentConfig(foreground=1.0, foreground_weights=[0, 1, 1, 0, 1, 0], **crop), (48, 48)
    )
    assert only_zero(image, mask, np.random.default_rng(1))[1].shape == (48, 48)
    for bad in ([], [1, -1], [1, 0, 0]):
        with pytest.raises(ValueError, match="foreground_weights"):
            AugmentConfig(foreground_weights=bad)


def test_foreground_weights_need_one_entry_per_class(tmp_path):
    from napari_fibsem.core.training import TrainingConfig, TrainingSetupError
    from napari_fibsem.core.training.data import resolve_class_map

    cfg = TrainingConfig(
        data_paths=[tmp_path], save_path=tmp_path / "run", augment={"foreground_weights": [0, 1]}
    )
    with pytest.raises(TrainingSetupError, match="foreground_weights has 2 entries .* needs 6"):
        resolve_class_map(cfg)
