"""SAM / MobileSAM prompt service: cached image embeddings, background prefetch, prompts -> mask.

Headless: the labelling widget owns one :class:`SamService` and calls it from worker threads.

* ``embed(image)`` runs the image encoder at most once per image content + model +
  preprocessing: results are kept in a RAM LRU and on disk (``$NAPARI_FIBSEM_CACHE`` or the user
  cache folder), so revisiting an image costs no encoder run, also after a restart.
* ``prefetch(images)`` computes neighbours' embeddings on one background thread while the person
  labels; ``embed`` of an image that is being prefetched waits for that job instead of starting a
  second encoder run, and the current image goes first (no new prefetch job starts while an
  ``embed`` call is waiting). Callbacks are plain callables, called on the thread that did the
  work: a Qt widget must hand them over to its own thread (e.g. by emitting a signal).
* ``predict(embedding, points, labels, box)`` turns prompts into a mask of the image's size with
  the model's prompt encoder and mask decoder, reorganised for speed (``sam.decoder``).

Grayscale normalisation follows one fixed rule (``sam.cache``): an intensity window given to
the service, else a fixed mapping per dtype; images go to the encoder as gray repeated over RGB.
The prefetch queue and its thread live in ``sam.prefetch``, prompt checking in ``sam.prompts``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_fibsem.core.sam.cache import (
    DiskCache,
    RamCache,
    cache_root,
    check_image,
    check_window,
    embedding_key,
    folder_window,
    image_sha1,
    normalise,
)
from napari_fibsem.core.sam.models import (
    SAM_VARIANTS,
    SamCheckpointError,
    SamModel,
    detect_model_type,
    load_sam,
    reference_predictor,
)
from napari_fibsem.core.sam.prefetch import Job, PrefetchProgress, PrefetchQueue
from napari_fibsem.core.sam.prompts import check_mask_input, check_prompts, to_input_frame

__all__ = [
    "SAM_VARIANTS",
    "Embedding",
    "EmbeddingReady",
    "MaskResult",
    "PrefetchProgress",
    "SamCheckpointError",
    "SamModel",
    "SamService",
    "detect_model_type",
    "folder_window",
    "input_size_for",
    "load_sam",
    "reference_predictor",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Embedding:
    """Image-encoder output plus what is needed to map prompts and masks back to the image."""

    features: Any  # torch.Tensor, 1 x 256 x 64 x 64, on the model's device
    original_size: tuple[int, int]  # image (H, W)
    input_size: tuple[int, int]  # resized (h, w) before padding to the encoder's square input
    key: str  # cache key (image content + model + preprocessing + version)
    model_identity: str


@dataclass(frozen=True, eq=False)
class MaskResult:
    mask: np.ndarray  # bool, image (H, W)
    score: float  # the model's predicted IoU of this mask
    low_res_logits: np.ndarray  # 256 x 256 float32; can be passed back as ``mask_input``


@dataclass(frozen=True)
class EmbeddingReady:
    """Sent to ``on_ready`` whenever an embedding becomes available in RAM."""

    key: str
    tag: Hashable | None
    source: Literal["encoder", "disk", "ram"]
    seconds: float


def input_size_for(shape: tuple[int, int], long_side: int = 1024) -> tuple[int, int]:
    """Size of the image after scaling its long side to ``long_side`` (SAM's rounding)."""
    h, w = shape
    scale = long_side / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


class SamService:
    """One SAM model with an embedding cache, a prefetch thread and a fast prompt -> mask path.

    Thread-safe: ``embed``, ``prefetch``, ``cancel`` and ``predict`` may be called from any thread.
    ``encoder_runs`` counts image-encoder forward passes (tests and benchmarks assert on it).
    ``fast_decoder=False`` (or ``NAPARI_FIBSEM_SAM_FAST_DECODER=0`` when it is left None) decodes
    prompts with the package's ``SamPredictor`` instead of ``sam.decoder.FastDecoder``.
    """

    def __init__(
        self,
        model: SamModel,
        *,
        window: tuple[float, float] | None = None,
        ram_cache_size: int = 8,
        disk_cache: bool = True,
        cache_dir: str | Path | None = None,
        disk_cache_max_bytes: int = 2 * 1024**3,
        on_ready: Callable[[EmbeddingReady], None] | None = None,
        on_progress: Callable[[PrefetchProgress], None] | None = None,
        fast_decoder: bool | None = None,
    ) -> None:
        from napari_fibsem.core.sam.decoder import make_decoder

        self.model = model
        self.window = check_window(window)
        self.on_ready = on_ready
        self.on_progress = on_progress
        self._ram = RamCache(ram_cache_size)
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "sam_embeddings"
        self._disk = DiskCache(folder, disk_cache_max_bytes) if disk_cache else None
        self._decoder = make_decoder(model, fast_decoder)
        self._img_size = int(model.model.image_encoder.img_size)
        self._lock = threading.Lock()
        self._encoder_lock = threading.Lock()
        self._decode_lock = threading.Lock()
        self._prefetch = PrefetchQueue(
            lambda job: self._compute(job.key, job.signature, job.image, job.tag),
            lambda progress: self._call(self.on_progress, progress),
            self._lock,
        )
        self.encoder_runs = 0
        self._warm = False

    # -- keys and cache -------------------------------------------------------------------------

    def _key(self, image: np.ndarray) -> tuple[str, dict[str, Any]]:
        from napari_fibsem import __version__

        return embedding_key(image_sha1(image), self.model.identity, self.window, self._img_size, __version__)

    def key_for(self, image: np.ndarray) -> str:
        """The cache key of ``image`` under this service's model and normalisation."""
        return self._key(check_image(image))[0]

    def is_cached(self, image: np.ndarray) -> bool:
        """Whether ``embed(image)`` would run no encoder (in RAM or on disk)."""
        key = self.key_for(image)
        return key in self._ram or (self._disk is not None and self._disk.path(key).is_file())

    def clear_ram_cache(self) -> None:
        self._ram.clear()

    # -- embedding ------------------------------------------------------------------------------

    def _encode(self, image: np.ndarray):
        """Normalise, resize the long side to the encoder's size, repeat gray to RGB, pad, encode."""
        import torch
        import torch.nn.functional as F

        sam = self.model.model
        x = torch.from_numpy(normalise(image, self.window)).to(sam.device)
        x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
        input_size = input_size_for(x.shape[-2:], self._img_size)
        with torch.inference_mode():
            x = F.interpolate(x, input_size, mode="bilinear", align_corners=False, antialias=True)
            x = (x - sam.pixel_mean) / sam.pixel_std  # a 1-channel image broadcasts to 3 channels
            x = F.pad(x, (0, self._img_size - input_size[1], 0, self._img_size - input_size[0]))
            features = sam.image_encoder(x)
        with self._lock:
            self.encoder_runs += 1
        return features, input_size

    def _compute(self, key: str, signature: dict[str, Any], image: np.ndarray, tag: Hashable | None) -> Embedding:
        """Disk cache, else the encoder (one at a time); the result goes to RAM (and disk)."""
        import torch

        t0 = time.perf_counter()
        source: Literal["encoder", "disk"] = "disk"
        stored = self._disk.load(key, signature) if self._disk is not None else None
        if stored is not None:
            features = torch.from_numpy(stored["features"]).to(self.model.model.device)
            emb = Embedding(features, stored["original_size"], stored["input_size"], key, self.model.identity)
        else:
            source = "encoder"
            with self._encoder_lock:
                features, input_size = self._encode(image)
            emb = Embedding(features, tuple(image.shape[:2]), input_size, key, self.model.identity)
            if self._disk is not None:
                try:
                    self._disk.save(key, signature, features.float().cpu().numpy(), emb.original_size, input_size)
                except OSError as e:  # a full or read-only disk costs a recompute later, nothing else
                    log.warning("could not write SAM embedding cache %s: %s", self._disk.path(key), e)
        self._ram.put(key, emb)
        self._notify_ready(EmbeddingReady(key, tag, source, time.perf_counter() - t0))
        return emb

    def embed(self, image: np.ndarray, tag: Hashable | None = None) -> Embedding:
        """The embedding of ``image``: from RAM, disk, a running prefetch, or the encoder (in that order)."""
        image = check_image(image)
        key, signature = self._key(image)
        emb = self._ram.get(key)
        if emb is not None:
            self._notify_ready(EmbeddingReady(key, tag, "ram", 0.0))
            return emb
        future, owner = self._prefetch.claim(key)
        try:
            if not owner:
                return future.result()
            try:
                emb = self._compute(key, signature, image, tag)
            except BaseException as e:
                future.set_exception(e)
                raise
            future.set_result(emb)
            return emb
        finally:
            self._prefetch.release(key, owner)

    # -- background prefetch --------------------------------------------------------------------

    def prefetch(self, images: Iterable[np.ndarray], tags: Sequence[Hashable] | None = None,
                 replace: bool = False) -> int:
        """Queue embeddings to compute in the background; returns how many were queued.

        Images already in RAM, queued or being computed are skipped. ``replace=True`` drops the
        jobs still pending first (e.g. the neighbours of the image the person just left).
        """
        images = list(images)
        if tags is not None and len(tags) != len(images):
            raise ValueError(f"{len(tags)} tags for {len(images)} images")
        jobs = []
        for i, image in enumerate(images):
            image = np.array(check_image(image), copy=True)  # the caller may reuse its buffer
            key, signature = self._key(image)
            jobs.append(Job(key, signature, image, None if tags is None else tags[i]))
        return self._prefetch.add(jobs, replace, lambda key: key in self._ram)

    def cancel(self) -> int:
        """Drop pending prefetch jobs (a job already running finishes); returns how many were dropped."""
        return self._prefetch.cancel()

    @property
    def pending(self) -> int:
        """Prefetch jobs queued and not started."""
        return self._prefetch.pending

    @property
    def prefetching(self) -> bool:
        """Whether prefetch work is queued or running."""
        return bool(self._prefetch.pending) or self._prefetch.busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no prefetch job is queued or running; False on timeout."""
        return self._prefetch.wait_idle(timeout)

    def close(self) -> None:
        """Stop the prefetch thread (after its current job); pending jobs are dropped."""
        self._prefetch.close()

    def __enter__(self) -> SamService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _notify_ready(self, event: EmbeddingReady) -> None:
        self._call(self.on_ready, event)

    @staticmethod
    def _call(callback: Callable | None, payload: Any) -> None:
        if callback is None:
            return
        try:
            callback(payload)
        except Exception:  # a broken listener must not kill the worker or the embed call
            log.exception("SAM service callback %r failed", callback)

    # -- prompts -> mask ------------------------------------------------------------------------

    @property
    def fast_decoder(self) -> bool:
        """Whether prompts take the fast path (not ``SamPredictor``, nor the package's own modules
        that :class:`~napari_fibsem.core.sam.decoder.FastDecoder` runs for a non-standard decoder)."""
        return bool(self._decoder.fast)

    def warm_up(self, embedding: Embedding) -> None:
        """Decode one throwaway prompt, once per service: the first decode pays one-time set-up
        (~0.5 s on 2 cores, against ~0.1 s later), which a person's first click should not."""
        if self._warm:
            return
        h, w = embedding.original_size
        self.predict(embedding, [(w / 2, h / 2)], [1], multimask=True)
        self._warm = True

    def predict(
        self,
        embedding: Embedding,
        points: Sequence[tuple[float, float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
        multimask: bool = False,
        mask_input: np.ndarray | None = None,
    ) -> MaskResult:
        """Mask for point prompts (``labels`` 1 = object, 0 = background) and/or a box.

        Coordinates are image pixels, x right and y down, pixel centres at integers (as in
        napari). ``multimask=True`` lets the model choose among its three proposals (better for a
        single ambiguous click) and returns the one with the highest predicted IoU.
        """
        if embedding.model_identity != self.model.identity:
            raise ValueError(f"embedding was computed by model {embedding.model_identity}, "
                             f"this service runs {self.model.identity}")
        coords, labs, box_arr = check_prompts(points, labels, box, embedding.original_size)
        mask_input = check_mask_input(mask_input)
        coords, box_arr = to_input_frame(coords, box_arr, embedding.original_size, embedding.input_size)
        with self._decode_lock:
            mask, score, low = self._decoder.predict(
                embedding.key, embedding.features, embedding.input_size, embedding.original_size,
                coords, labs, box_arr, mask_input, multimask, float(self.model.model.mask_threshold))
        return MaskResult(mask, score, low)

