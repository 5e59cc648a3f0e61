"""Synthetic FIB-SEM scenes: reproducible, valid masks, exact keypoints, visible artefacts."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_fibsem.core.io.classes import ClassMap
from napari_fibsem.core.synthetic.scene import (
    KEYPOINT_FEATURES,
    PIXEL_SIZE_RANGE,
    Lamella,
    Needle,
    RenderStyle,
    SceneConfig,
    Speck,
    Substrate,
    Trench,
    generate_scene,
    random_layout,
    render,
)

IDS = ClassMap.default()
LAMELLA, NEEDLE, POST, COPPER, VOLUME = (
    IDS.id_of(n) for n in ("lamella", "manipulator", "landing_post", "copper_adaptor", "volume_block")
)
PREFIX_CLASS = {
    "Lamella": LAMELLA,
    "Needle": NEEDLE,
    "Landing": POST,
    "CopperAdapter": COPPER,
    "VolumeBlock": VOLUME,
}
EVERYTHING = dict(landing_post=True, copper_adaptor=True, volume_block=True, distractors=4)


def _class_of(feature: str) -> int | None:
    return next((c for p, c in PREFIX_CLASS.items() if feature.startswith(p)), None)


def _bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(m)
    return xs.min(), ys.min(), xs.max(), ys.max()


def test_same_seed_gives_identical_scene_and_other_seeds_differ():
    a = generate_scene(7, size=(128, 128), **EVERYTHING)
    b = generate_scene(7, SceneConfig(size=(128, 128), **EVERYTHING))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.keypoints == b.keypoints and a.pixel_size == b.pixel_size and a.needle_side == b.needle_side
    c = generate_scene(8, size=(128, 128), **EVERYTHING)
    assert not np.array_equal(a.image, c.image)
    assert a.keypoints["LamellaCentre"] != c.keypoints["LamellaCentre"], "layout should vary with the seed"


def test_layouts_vary_across_seeds():
    centres = np.array([generate_scene(s, size=(128, 128)).keypoints["LamellaCentre"] for s in range(12)])
    assert centres[:, 0].std() > 5 and centres[:, 1].std() > 5
    assert np.abs(centres - 63.5).max() > 20, "the lamella should also sit off-centre"


@pytest.mark.parametrize("size", [(128, 128), (256, 384)])
@pytest.mark.parametrize("beam", ["ion", "electron"])
def test_image_and_mask_types_and_class_ids(size, beam):
    s = generate_scene(3, size=size, beam=beam, **EVERYTHING)
    assert s.image.dtype == np.uint8 and s.image.shape == size
    assert s.mask.dtype == np.uint8 and s.mask.shape == size
    assert set(np.unique(s.mask)) <= set(IDS.ids)
    assert s.beam == beam and s.config.size == size
    assert s.image.std() > 10, "an image, not a flat field"


@pytest.mark.parametrize("seed", range(6))
def test_keypoints_lie_on_the_objects_they_name(seed):
    side = ["left", "right", "top"][seed % 3]
    s = generate_scene(
        seed, size=(128, 128), beam=["ion", "electron"][seed % 2], needle_side=side, **EVERYTHING
    )
    assert set(s.keypoints) <= set(KEYPOINT_FEATURES)
    assert s.keypoints["ImageCentre"] == (63.5, 63.5)
    for feature, (x, y) in s.keypoints.items():
        cid = _class_of(feature)
        if cid is None:
            continue
        xi, yi = int(round(x)), int(round(y))
        window = s.mask[max(yi - 1, 0) : yi + 2, max(xi - 1, 0) : xi + 2]
        assert (window == cid).any(), f"{feature} at {(x, y)} is not on class {cid}"
    centre = s.keypoints["LamellaCentre"]
    assert s.mask[int(round(centre[1])), int(round(centre[0]))] == LAMELLA


@pytest.mark.parametrize("beam", ["ion", "electron"])
def test_rectangle_keypoints_agree_with_mask_and_layout(beam):
    s = generate_scene(11, size=(256, 384), beam=beam, **EVERYTHING)
    kp = s.keypoints
    x0, y0, x1, y1 = _bbox(s.mask == LAMELLA)
    yc, xc = (y0 + y1) / 2, (x0 + x1) / 2
    assert kp["LamellaLeftEdge"] == (x0, yc) and kp["LamellaRightEdge"] == (x1, yc)
    assert kp["LamellaTopEdge"] == (xc, y0) and kp["LamellaBottomEdge"] == (xc, y1)
    ys, xs = np.nonzero(s.mask == LAMELLA)
    assert kp["LamellaCentre"] == pytest.approx((xs.mean(), ys.mean()))
    lam = next(o for o in s.objects if isinstance(o, Lamella))
    assert (lam.rect.x0, lam.rect.y0, lam.rect.x1, lam.rect.y1) == (x0, y0, x1, y1), "mask is the exact slab"
    assert (s.mask[y0 : y1 + 1, x0 : x1 + 1] == LAMELLA).all()

    x0, y0, x1, y1 = _bbox(s.mask == VOLUME)
    assert kp["VolumeBlockTopLeftCorner"] == (x0, y0) and kp["VolumeBlockBottomRightCorner"] == (x1, y1)
    assert kp["VolumeBlockTopEdge"] == ((x0 + x1) / 2, y0)
    x0, y0, x1, y1 = _bbox(s.mask == COPPER)
    assert kp["CopperAdapterBottomEdge"] == ((x0 + x1) / 2, y1)
    x0, y0, x1, y1 = _bbox(s.mask == POST)
    assert kp["LandingGridLeftEdge"] == (x0, (y0 + y1) / 2) and kp["LandingGridRightEdge"] == (
        x1,
        (y0 + y1) / 2,
    )
    ys, xs = np.nonzero(s.mask == POST)
    d = np.hypot(xs - kp["ImageCentre"][0], ys - kp["ImageCentre"][1])
    px, py = kp["LandingPost"]
    assert np.hypot(px - kp["ImageCentre"][0], py - kp["ImageCentre"][1]) == pytest.approx(d.min(), abs=0.6)


@pytest.mark.parametrize("side", ["left", "right", "top"])
@pytest.mark.parametrize("seed", [0, 5])
def test_needle_tip_is_the_extreme_needle_pixel(side, seed):
    s = generate_scene(seed, size=(128, 128), needle_side=side, landing_post=True)
    assert s.needle_side == side
    m = s.mask == NEEDLE
    ys, xs = np.nonzero(m)
    if side == "left":
        tip = (xs.max(), ys[xs == xs.max()].mean())
    elif side == "right":
        tip = (xs.min(), ys[xs == xs.min()].mean())
    else:
        tip = (xs[ys == ys.max()].mean(), ys.max())
    assert s.keypoints["NeedleTip"] == pytest.approx(tip)
    entry = {"left": m[:, 0], "right": m[:, -1], "top": m[0, :]}[side]
    assert entry.any(), "the needle enters from its border"
    # it stops short of the lamella: a gap of background between them
    assert not (ndi.binary_dilation(m, iterations=2) & (s.mask == LAMELLA)).any()


@pytest.mark.parametrize(
    "flags",
    [
        dict(lamella=True, needle=True),
        dict(lamella=True, needle=False, landing_post=True),
        dict(lamella=False, needle=True, copper_adaptor=True),
        dict(lamella=False, needle=False, volume_block=True),
        dict(lamella=True, needle=True, landing_post=True, copper_adaptor=True, volume_block=True),
    ],
)
@pytest.mark.parametrize("size", [(64, 64), (128, 128)])
def test_requested_classes_appear_and_absent_ones_do_not(flags, size):
    wanted = {
        LAMELLA: flags.get("lamella", False),
        NEEDLE: flags.get("needle", False),
        POST: flags.get("landing_post", False),
        COPPER: flags.get("copper_adaptor", False),
        VOLUME: flags.get("volume_block", False),
    }
    for seed in range(3):
        s = generate_scene(seed, size=size, distractors=3, **flags)
        present = set(np.unique(s.mask).tolist())
        for cid, want in wanted.items():
            assert (cid in present) == want, f"class {cid}: wanted {want}, seed {seed}"
        named = {_class_of(f) for f in s.keypoints} - {None}
        assert named == {cid for cid, want in wanted.items() if want}
        assert (s.needle_side is not None) == wanted[NEEDLE]


def test_objects_do_not_overlap_and_stay_inside():
    size = (128, 128)
    for seed in range(6):
        s = generate_scene(seed, size=size, **EVERYTHING)
        count = np.zeros(size, int)
        for o in s.objects:
            if isinstance(o, (Substrate, Trench)):
                continue
            if isinstance(o, Speck):
                count[o.bounds().slices(size)] += 1
                continue
            sl, m = o.footprint(size)
            count[sl] += m
            if not isinstance(o, Needle) and type(o).__name__ != "LandingPost":
                r = o.rect
                assert 0 <= r.x0 and 0 <= r.y0 and r.x1 < size[1] and r.y1 < size[0]
        assert count.max() == 1, f"objects overlap in seed {seed}"


def _column_stripes(image: np.ndarray) -> float:
    cols = image.astype(float).mean(axis=0)
    return float(np.var(cols - ndi.gaussian_filter1d(cols, 4)))


def test_ion_scenes_show_vertical_curtaining():
    """Stripes run down the milled faces (trench and lamella) and are faint elsewhere."""
    for seed in range(4):
        on = generate_scene(seed, size=(256, 384), beam="ion", needle=False)
        off = generate_scene(seed, size=(256, 384), beam="ion", needle=False, curtaining=0)
        assert np.array_equal(on.mask, off.mask)
        t = next(o for o in on.objects if isinstance(o, Trench)).rect
        lam = next(o for o in on.objects if isinstance(o, Lamella)).rect
        milled = (slice(t.y0, lam.y1 + 1), slice(lam.x0 + 2, lam.x1 - 1))
        assert _column_stripes(on.image[milled]) > 2 * _column_stripes(off.image[milled])
        assert _column_stripes(on.image) > 1.1 * _column_stripes(off.image)
    # electron images have none unless asked for
    e = generate_scene(1, size=(128, 128), beam="electron")
    assert np.array_equal(e.image, generate_scene(1, size=(128, 128), beam="electron", curtaining=0).image)
    assert not np.array_equal(
        e.image, generate_scene(1, size=(128, 128), beam="electron", curtaining=1).image
    )


def _high_pass(image: np.ndarray) -> np.ndarray:
    f = image.astype(float)
    return f - ndi.gaussian_filter(f, 2)


@pytest.mark.parametrize("beam", ["ion", "electron"])
def test_noise_and_blur_controls(beam):
    noisy = generate_scene(4, size=(256, 384), beam=beam)
    clean = generate_scene(4, size=(256, 384), beam=beam, noise=0)
    assert np.array_equal(noisy.mask, clean.mask)
    # the median ignores object edges, which are sharp in both
    assert np.median(np.abs(_high_pass(noisy.image))) > 3 * np.median(np.abs(_high_pass(clean.image)))
    blurred = generate_scene(4, size=(256, 384), beam=beam, noise=0, blur=4)
    assert np.mean(_high_pass(blurred.image) ** 2) < 0.6 * np.mean(_high_pass(clean.image) ** 2)


@pytest.mark.parametrize("trench", [True, False])
@pytest.mark.parametrize("beam", ["ion", "electron"])
def test_lamella_edges_stand_out_from_their_surroundings(trench, beam):
    for seed in range(4):
        s = generate_scene(seed, size=(256, 384), beam=beam, trench=trench, needle=False)
        lam = s.mask == LAMELLA
        band = lam & ~ndi.binary_erosion(lam, iterations=2)
        ring = (
            ndi.binary_dilation(lam, iterations=6) & ~ndi.binary_dilation(lam, iterations=2) & (s.mask == 0)
        )
        img = s.image.astype(float)
        assert abs(img[band].mean() - img[ring].mean()) > 30, f"seed {seed}: lamella rim not visible"


def test_large_frame_and_pixel_size():
    s = generate_scene(0, **EVERYTHING)
    assert s.image.shape == (1024, 1536) and s.mask.shape == (1024, 1536)
    assert {LAMELLA, NEEDLE, POST, COPPER, VOLUME} <= set(np.unique(s.mask).tolist())
    lo, hi = PIXEL_SIZE_RANGE
    assert (lo, hi) == (10e-9, 200e-9)
    sizes = [generate_scene(k, size=(64, 64)).pixel_size for k in range(20)]
    assert all(lo <= p <= hi for p in sizes) and len(set(sizes)) == 20
    assert generate_scene(0, size=(64, 64), pixel_size=3.5e-8).pixel_size == 3.5e-8


def test_ion_lamella_is_foreshortened():
    def ratio(beam):
        r = []
        for seed in range(6):
            x0, y0, x1, y1 = _bbox(generate_scene(seed, size=(256, 384), beam=beam).mask == LAMELLA)
            r.append((y1 - y0 + 1) / (x1 - x0 + 1))
        return np.mean(r)

    assert ratio("ion") < 0.7 * ratio("electron")


def test_layout_can_be_shifted_and_rendered_again():
    """The simulator path: move the objects, render again; mask and texture move with them."""
    cfg = SceneConfig(size=(128, 160), needle=False, charging=0)
    objects = random_layout(np.random.default_rng(2), cfg)
    style = RenderStyle(beam="ion", noise=0, blur=0, curtaining=1.0)
    img_a, mask_a = render(objects, cfg.size, np.random.default_rng(0), style)
    dx, dy = 6, 4
    shifted = [o.shifted(dx, dy) for o in objects]
    img_b, mask_b = render(shifted, cfg.size, np.random.default_rng(1), style)
    assert np.array_equal(mask_b[dy:, dx:], mask_a[:-dy, :-dx])
    a, b = img_a[20:-20, 20:-20].astype(float), img_b[20 + dy : -20 + dy, 20 + dx : -20 + dx].astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9, "texture is anchored to the sample"
    assert np.corrcoef(a.ravel(), img_b[20:-20, 20:-20].astype(float).ravel())[0, 1] < 0.9


def test_bad_config_is_refused_with_a_clear_message():
    with pytest.raises(TypeError, match="unknown SceneConfig fields"):
        generate_scene(0, size=(64, 64), needle_sid="left")
    with pytest.raises(ValueError, match="size"):
        SceneConfig(size=(8, 8))
    with pytest.raises(ValueError, match="beam"):
        SceneConfig(beam="xray")
    with pytest.raises(ValueError, match="needle_side"):
        SceneConfig(needle_side="bottom")
