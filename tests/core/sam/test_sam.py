"""SAM service: loading, embedding cache (RAM + disk), prefetch queue, prompts -> mask.

Random weights only (nothing is downloaded): a randomly initialised MobileSAM (vit_t) on small
images. Queue-logic tests swap the encoder for a stub so they cost no encoder run.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("segment_anything")
pytest.importorskip("mobile_sam")

import torch  # noqa: E402

from napari_fibsem.core.sam.service import (  # noqa: E402
    SamCheckpointError,
    SamService,
    detect_model_type,
    folder_window,
    input_size_for,
    load_sam,
    reference_predictor,
)

SHAPE = (128, 192)


def _image(seed: int, shape=SHAPE, dtype=np.uint8) -> np.ndarray:
    """Smooth blobs plus noise: a structured image (a bright disk on a gradient)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 60 + 40 * xx / shape[1] + 100 * (((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) < (shape[0] / 4) ** 2)
    img = img + rng.normal(0, 8, shape)
    return np.clip(img, 0, 255).astype(dtype)


@pytest.fixture(scope="module")
def vit_t():
    torch.manual_seed(0)
    return load_sam(None, "vit_t", device="cpu", random_weights=True)


@pytest.fixture(scope="module", params=["fast", "plain"])
def shared(vit_t, tmp_path_factory, request):
    """One service and one embedding for the prompt tests (its own cache folder), once with the
    fast decoder and once with the SamPredictor fallback, so the parity tests cover both."""
    fast = request.param == "fast"
    service = SamService(vit_t, cache_dir=tmp_path_factory.mktemp("sam_shared"), fast_decoder=fast)
    assert service.fast_decoder is fast
    image = _image(0)
    yield service, service.embed(image)
    service.close()


def _stub_encoder(service: SamService, gate: threading.Event | None = None, order: list | None = None):
    """Replace the image encoder by a cheap one that can be held at a gate and records its images."""

    def encode(image):
        if gate is not None:
            assert gate.wait(10)
        if order is not None:
            order.append(int(image[0, 0]))
        with service._lock:
            service.encoder_runs += 1
        return torch.zeros(1, 256, 64, 64), input_size_for(image.shape[:2])

    service._encode = encode


def _reference(vit_t, emb, **kwargs):
    """SamPredictor.predict on our embedding (same features, sizes): masks, scores, low-res logits."""
    pred = reference_predictor(vit_t)
    pred.features, pred.original_size, pred.input_size, pred.is_image_set = (
        emb.features, emb.original_size, emb.input_size, True)
    return pred.predict(**kwargs)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- loading ----------------------------------------------------------------------------------------


def test_load_errors(tmp_path, vit_t):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_sam(missing, "vit_t")
    with pytest.raises(ValueError, match="random_weights=True"):
        load_sam(None, "vit_t")
    with pytest.raises(ValueError, match="vit_b.*vit_h.*vit_l.*vit_t"):
        load_sam(None, "vit_x", random_weights=True)

    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("hello")
    with pytest.raises(SamCheckpointError, match="notes.pth"):
        load_sam(not_torch, "vit_t")

    state = vit_t.model.state_dict()
    broken = {k: v for k, v in state.items() if not k.startswith("mask_decoder.iou_prediction_head")}
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    n_missing = len(state) - len(broken) + 1
    with pytest.raises(SamCheckpointError, match=rf"broken.pth.*'vit_t'.*{n_missing} missing, 1 unexpected"):
        load_sam(path, "vit_t")


def test_load_detects_type_and_keeps_identity(tmp_path, vit_t):
    path = tmp_path / "renamed_mobile_sam.pt"
    torch.save({"model": vit_t.model.state_dict()}, path)  # nested state dicts load too
    loaded = load_sam(path, device="cpu")  # no model_type: recognised from the weights
    assert loaded.model_type == "vit_t" and loaded.checkpoint == path
    assert loaded.identity == vit_t.identity  # same weights -> same cache entries
    # built without random draws (the file overwrites them): every parameter and buffer, the
    # buffers computed from the weights included, equals the model that was saved
    buffers = dict(vit_t.model.named_buffers())
    assert all(torch.equal(buffers[k], b) for k, b in loaded.model.named_buffers())
    init = torch.nn.init.trunc_normal_
    assert torch.nn.init.trunc_normal_ is init  # the initialisers are back after the build


def test_building_for_a_checkpoint_skips_the_random_draws(monkeypatch):
    import timm.layers.weight_init as timm_init

    from napari_fibsem.core.sam.models import build_sam

    calls = []
    real = timm_init._trunc_normal_
    monkeypatch.setattr(timm_init, "_trunc_normal_", lambda *a, **k: calls.append(1) or real(*a, **k))
    init = torch.nn.init.trunc_normal_
    skipped = build_sam("vit_t", random_init=False).state_dict()
    assert calls == [] and torch.nn.init.trunc_normal_ is init  # no draws; initialisers put back
    drawn = build_sam("vit_t").state_dict()
    assert len(calls) > 10 and skipped.keys() == drawn.keys()  # timm's draws: what the skip saves


def test_detect_model_type_from_vit_width():
    assert detect_model_type({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}) == "vit_b"
    assert detect_model_type({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}) == "vit_h"
    assert detect_model_type({"image_encoder.layers.0.x": torch.zeros(1)}) == "vit_t"
    assert detect_model_type({"something.else": torch.zeros(1)}) is None


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    with pytest.raises(ImportError, match=r"napari-fibsem\[sam\]"):
        load_sam(None, "vit_t", random_weights=True)


# -- embeddings and cache ---------------------------------------------------------------------------


def test_embed_cached_in_ram_and_on_disk(vit_t, tmp_cache):
    image = _image(1)
    events = []
    service = SamService(vit_t, on_ready=events.append)
    emb = service.embed(image)
    assert service.encoder_runs == 1
    assert emb.features.shape == (1, 256, 64, 64)
    assert emb.original_size == SHAPE and emb.input_size == (683, 1024)
    assert service.embed(image.copy()) is emb and service.encoder_runs == 1
    assert [e.source for e in events] == ["encoder", "ram"]
    files = list((tmp_cache / "sam_embeddings").glob("*.npz"))
    assert [f.stem for f in files] == [emb.key]

    fresh = SamService(vit_t)  # e.g. after a restart: same cache folder
    assert fresh.is_cached(image)
    again = fresh.embed(image)
    assert fresh.encoder_runs == 0
    assert torch.equal(again.features, emb.features) and again.input_size == emb.input_size


def test_cache_key_depends_on_content_model_and_window(vit_t):
    service = SamService(vit_t, disk_cache=False)
    image = _image(2)
    key = service.key_for(image)
    assert service.key_for(image.copy()) == key
    changed = image.copy()
    changed[5, 5] ^= 1
    assert service.key_for(changed) != key
    assert service.key_for(image.astype(np.uint16)) != key
    other_model = dataclasses.replace(vit_t, weights_sha1="0" * 40)
    assert SamService(other_model, disk_cache=False).key_for(image) != key
    assert SamService(vit_t, disk_cache=False, window=(10, 200)).key_for(image) != key


def test_corrupt_disk_file_is_recomputed(vit_t, tmp_cache):
    image = _image(3)
    service = SamService(vit_t)
    _stub_encoder(service)
    key = service.embed(image).key
    (tmp_cache / "sam_embeddings" / f"{key}.npz").write_bytes(b"truncated")
    fresh = SamService(vit_t)
    _stub_encoder(fresh)
    fresh.embed(image)
    assert fresh.encoder_runs == 1


def test_ram_lru_evicts_oldest(vit_t):
    service = SamService(vit_t, ram_cache_size=2, disk_cache=False)
    _stub_encoder(service)
    a, b, c = (np.full(SHAPE, v, np.uint8) for v in (1, 2, 3))
    for image in (a, b, c, b):
        service.embed(image)
    assert service.encoder_runs == 3
    service.embed(a)  # evicted by c
    assert service.encoder_runs == 4


def test_normalisation_rule(vit_t):
    from napari_fibsem.core.sam.cache import normalise

    u16 = np.array([[0, 257 * 100, 65535]], np.uint16)
    assert np.allclose(normalise(u16, None), [[0, 100, 255]])
    assert np.allclose(normalise(u16, (0, 257 * 200)), [[0, 127.5, 255]])
    assert np.allclose(normalise(np.array([[0.0, 0.5, 2.0]]), None), [[0, 127.5, 255]])
    window = folder_window([u16, u16], percentiles=(0, 100))
    assert window == (0.0, 65535.0)
    with pytest.raises(ValueError, match="window"):
        SamService(vit_t, window=(5, 5))
    with pytest.raises(ValueError, match="grayscale"):
        SamService(vit_t, disk_cache=False).embed(np.zeros((4, 5, 6)))


# -- background prefetch ----------------------------------------------------------------------------


def test_embed_waits_for_a_running_prefetch(vit_t):
    image = _image(4)
    progress = []
    service = SamService(vit_t, disk_cache=False, on_progress=progress.append)
    assert service.prefetch([image], tags=["next"]) == 1
    deadline = time.monotonic() + 10
    while not service._prefetch.busy and time.monotonic() < deadline:  # the worker took the job
        time.sleep(0.01)
    emb = service.embed(image)
    assert service.encoder_runs == 1
    assert service.wait_idle(10) and progress[-1].done == 1
    assert service.embed(image) is emb and service.encoder_runs == 1
    assert service.prefetch([image]) == 0  # already in RAM
    service.close()


def test_embed_takes_over_a_queued_job_and_goes_first(vit_t):
    gate, order = threading.Event(), []
    service = SamService(vit_t, disk_cache=False)
    _stub_encoder(service, gate, order)
    a, b, c = (np.full(SHAPE, v, np.uint8) for v in (1, 2, 3))
    service.prefetch([a, b, c])
    while not service._prefetch.busy:
        time.sleep(0.005)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("c", service.embed(c)))
    thread.start()  # c was queued behind b: the person's image is taken over, not recomputed
    time.sleep(0.05)
    gate.set()
    thread.join(10)
    assert service.wait_idle(10)
    assert order == [1, 3, 2] and service.encoder_runs == 3
    service.close()


def test_cancel_drops_pending_jobs(vit_t):
    gate, order = threading.Event(), []
    service = SamService(vit_t, disk_cache=False)
    _stub_encoder(service, gate, order)
    images = [np.full(SHAPE, v, np.uint8) for v in (1, 2, 3)]
    assert service.prefetch(images) == 3
    while not service._prefetch.busy:
        time.sleep(0.005)
    assert service.cancel() == 2 and service.pending == 0
    gate.set()
    assert service.wait_idle(10)
    assert order == [1] and service.is_cached(images[0]) and not service.is_cached(images[1])
    assert service.prefetch(images[1:], replace=True) == 2
    assert service.wait_idle(10) and order == [1, 2, 3]
    service.close()


# -- prompts -> mask --------------------------------------------------------------------------------


def test_point_prompt_matches_sam_predictor(vit_t, shared):
    service, emb = shared
    points, labels = [(64.0, 60.0)], [1]
    cold = service.predict(emb, points, labels)
    service.warm_up(emb)  # a throwaway decode leaves nothing behind
    result = service.predict(emb, points, labels)
    assert np.array_equal(result.mask, cold.mask) and np.array_equal(result.low_res_logits, cold.low_res_logits)
    assert result.mask.shape == SHAPE and result.mask.dtype == bool
    assert result.low_res_logits.shape == (256, 256)
    ref_masks, ref_scores, ref_low = _reference(vit_t, emb, point_coords=np.array(points), point_labels=np.array(labels),
                                                multimask_output=False)
    assert 0.01 < ref_masks[0].mean() < 0.99, "degenerate reference mask: pick another prompt"
    assert _iou(result.mask, ref_masks[0]) > 0.98
    valid = (-(-emb.input_size[0] // 4), -(-emb.input_size[1] // 4))
    assert np.allclose(result.low_res_logits[: valid[0], : valid[1]], ref_low[0][: valid[0], : valid[1]], atol=1e-4)
    assert result.score == pytest.approx(float(ref_scores[0]), abs=1e-5)


def test_box_negative_point_and_multimask(vit_t, shared):
    service, emb = shared
    box = (100.0, 90.0, 20.0, 30.0)  # corners in any order
    points, labels = [(64.0, 60.0), (30.0, 100.0)], [1, 0]
    result = service.predict(emb, points, labels, box=box)
    ref, _, _ = _reference(vit_t, emb, point_coords=np.array(points), point_labels=np.array(labels),
                           box=np.array([20.0, 30.0, 100.0, 90.0]), multimask_output=False)
    assert result.mask.shape == SHAPE and _iou(result.mask, ref[0]) > 0.98

    best = service.predict(emb, points[:1], labels[:1], multimask=True)
    ref, scores, _ = _reference(vit_t, emb, point_coords=np.array(points[:1]), point_labels=np.array(labels[:1]))
    assert best.score == pytest.approx(float(scores.max()), abs=1e-5)
    assert _iou(best.mask, ref[int(scores.argmax())]) > 0.98

    refined = service.predict(emb, points, labels, mask_input=result.low_res_logits)  # iterative refinement
    assert refined.mask.shape == SHAPE


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [(192.0, 10.0)], "labels": [1]}, "outside the 192x128 image"),
        ({"points": [(10.0, -3.0)], "labels": [1]}, "outside"),
        ({"points": [(10.0, 10.0), (20.0, 20.0)], "labels": [1]}, "2 points need as many labels"),
        ({"points": [(10.0, 10.0)], "labels": [2]}, "1 \\(object\\) or 0"),
        ({"points": [(10.0, 10.0, 1.0)], "labels": [1]}, "\\(x, y\\) pairs"),
        ({"box": (0.0, 0.0, 500.0, 10.0)}, "box .* outside"),
        ({"box": (0.0, 0.0, 5.0)}, "four finite numbers"),
        ({}, "at least one point or a box"),
    ],
)
def test_bad_prompts(shared, kwargs, message):
    service, emb = shared
    with pytest.raises(ValueError, match=message):
        service.predict(emb, **kwargs)


def test_embedding_of_another_model_is_refused(vit_t, shared):
    _, emb = shared
    other = SamService(dataclasses.replace(vit_t, weights_sha1="f" * 40), disk_cache=False)
    with pytest.raises(ValueError, match="computed by model"):
        other.predict(emb, [(5.0, 5.0)], [1])


def test_fast_decoder_switch(vit_t, monkeypatch):
    from napari_fibsem.core.sam.decoder import FAST_DECODER_ENV

    monkeypatch.delenv(FAST_DECODER_ENV, raising=False)
    assert SamService(vit_t, disk_cache=False).fast_decoder
    monkeypatch.setenv(FAST_DECODER_ENV, "0")
    assert not SamService(vit_t, disk_cache=False).fast_decoder
    assert SamService(vit_t, disk_cache=False, fast_decoder=True).fast_decoder  # the argument wins


def test_untested_package_version_falls_back_to_sam_predictor(vit_t, monkeypatch):
    import napari_fibsem.core.sam.decoder as decoder

    monkeypatch.setitem(decoder.TESTED_VERSIONS, "mobile_sam", ("mobilesam-mirror", "0.0.1"))
    with pytest.warns(RuntimeWarning, match=r"mobilesam-mirror .*tested: 0\.0\.1"):
        service = SamService(vit_t, disk_cache=False)
    assert not service.fast_decoder


@pytest.mark.slow
def test_vit_b_random_weights(tmp_path):
    torch.manual_seed(0)
    model = load_sam(None, "vit_b", device="cpu", random_weights=True)
    service = SamService(model, cache_dir=tmp_path)
    emb = service.embed(_image(5, (48, 64)))
    result = service.predict(emb, [(20.0, 24.0)], [1])
    ref, _, _ = _reference(model, emb, point_coords=np.array([[20.0, 24.0]]), point_labels=np.array([1]),
                           multimask_output=False)
    assert result.mask.shape == (48, 64) and _iou(result.mask, ref[0]) > 0.98
