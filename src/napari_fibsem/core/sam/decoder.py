"""Prompt -> mask on a cached embedding, faster than ``SamPredictor.predict`` with the same math.

Why it is faster (same weights, same formulas, reordered):

* Attention between the ~7 prompt tokens and the 4096 image tokens never projects the image
  side. Token->image: the key projection is folded into the (few) queries, ``q.(W x + b)`` =
  ``(W^T q).x + const``, and the value projection is applied after pooling (softmax rows sum to
  one). Image->token: the query projection is folded into the keys and the output projection
  into the values. That replaces four 4096x256x128 matrix products per block by ones with
  4096x256x(heads*tokens) and removes the reshapes/copies of the per-head layout.
* Only the mask that is shown is computed past the transformer: the final token->image attention
  for the IoU token and the mask tokens that may be shown (each token attends on its own), one
  hypernetwork output, the upscaling convolutions (2x2, stride 2: plain matrix products) only over
  the image part of the padded 64x64 grid, in bands that keep their intermediates in the CPU
  cache, and the two bilinear resizes only over that part (SamPredictor resizes all three masks
  over the whole padded square).
* Dense positional encoding and ``features + no-mask embedding`` are computed once per embedding.

Where the model's decoder is not the standard one, the package's own modules run instead.

The reordering is checked against ``SamPredictor`` (``tests/core/sam/test_sam.py``) for the
package versions in :data:`TESTED_VERSIONS` only, so :func:`make_decoder` chooses: the fast path
by default, ``SamPredictor`` itself (:class:`PlainDecoder`) when switched off (argument
``fast_decoder=False`` of the service, or ``NAPARI_FIBSEM_SAM_FAST_DECODER=0``) or, with a
warning, when the installed package is another version than the tested one.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_fibsem.core.sam.models import SAM_VARIANTS, SamModel, reference_predictor

FAST_DECODER_ENV = "NAPARI_FIBSEM_SAM_FAST_DECODER"
"""``0``/``false``/``no``/``off``: decode with ``SamPredictor`` instead of :class:`FastDecoder`."""
TESTED_VERSIONS = {"segment_anything": ("segment-anything", "1.0"), "mobile_sam": ("mobilesam-mirror", "1.0.0")}
"""Module -> (distribution, version) whose prompt encoder and mask decoder the fast path was
checked against; keep in step with requirements/constraints.txt and rerun the parity tests."""
LOW_RES_FILL = -20.0  # low-res logits of the padding (outside the image): clearly background
UPSCALE_BAND_CELLS = 512  # grid cells per band of the CPU upscaling (intermediates of ~2 MB)


@dataclass
class _Prepared:
    """Prompt-independent tensors for one embedding (image tokens as rows: n x C).

    The first transformer block sees the image side before any prompt has touched it, so its
    image-side projections are computed once per embedding (``*_t``: heads x ch x n).
    """

    key: str
    x: torch.Tensor  # features + no-mask embedding
    k1_t: torch.Tensor  # block 1, token->image keys
    v1: torch.Tensor  # block 1, token->image values (heads x n x ch)
    q1_t: torch.Tensor  # block 1, image->token queries


def _split_heads_weight(w: torch.Tensor, heads: int) -> torch.Tensor:
    """(d, C) projection weight -> (heads, d/heads, C)."""
    d, c = w.shape
    return w.reshape(heads, d // heads, c)


def _heads_t(x: torch.Tensor, heads: int) -> torch.Tensor:
    """n x d -> heads x (d/heads) x n, contiguous."""
    n, d = x.shape
    return x.T.reshape(heads, d // heads, n).contiguous()


def _token_to_image(attn, q_tok: torch.Tensor, k_img: torch.Tensor, v_img: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_tok, k=k_img, v=v_img)`` without projecting the image tokens."""
    h = attn.num_heads
    q = attn.q_proj(q_tok)  # N x d
    n_tok, d = q.shape
    ch = d // h
    qh = q.reshape(n_tok, h, ch).transpose(0, 1)  # h x N x ch
    g = (qh @ _split_heads_weight(attn.k_proj.weight, h)).reshape(h * n_tok, -1) / math.sqrt(ch)
    scores = g @ k_img.T  # (h*N) x n ; k bias is constant per row and cancels in the softmax
    weights = torch.softmax(scores, dim=-1)
    pooled = (weights @ v_img).reshape(h, n_tok, -1)  # h x N x C
    wv = _split_heads_weight(attn.v_proj.weight, h)  # h x ch x C
    out = pooled @ wv.transpose(1, 2) + attn.v_proj.bias.reshape(h, 1, ch)  # h x N x ch
    return attn.out_proj(out.transpose(0, 1).reshape(n_tok, d))


def _token_to_image_pre(attn, q_tok: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Token->image attention with the image side already projected (block 1)."""
    h = attn.num_heads
    q = attn.q_proj(q_tok)
    n_tok, d = q.shape
    ch = d // h
    qh = q.reshape(n_tok, h, ch).transpose(0, 1) / math.sqrt(ch)
    weights = torch.softmax(qh @ k_t, dim=-1)  # h x N x n
    out = weights @ v  # h x N x ch
    return attn.out_proj(out.transpose(0, 1).reshape(n_tok, d))


def _image_to_token_out(attn, scores: torch.Tensor, v: torch.Tensor, n_tok: int, residual: torch.Tensor,
                        in_place: bool = False) -> torch.Tensor:
    """``residual`` + attention output: softmax over the tokens per head, then values and output
    projection folded together (each head's weights sum to one, so the output bias is spread
    over the heads' rows). ``in_place`` adds into ``residual`` (saves a 4096 x C copy)."""
    h = attn.num_heads
    d = v.shape[1]
    ch = d // h
    weights = torch.softmax(scores.reshape(h, n_tok, -1), dim=1).reshape(h * n_tok, -1)  # (h*N) x n
    vh = v.reshape(n_tok, h, ch).transpose(0, 1)  # h x N x ch
    wo = attn.out_proj.weight.reshape(-1, h, ch).permute(1, 2, 0)  # h x ch x C
    u = (vh @ wo).reshape(h * n_tok, -1) + attn.out_proj.bias / h  # (h*N) x C
    if in_place:
        return residual.addmm_(weights.T, u)
    return torch.addmm(residual, weights.T, u)


def _image_to_token(attn, q_img: torch.Tensor, k_tok: torch.Tensor, v_tok: torch.Tensor,
                    residual: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """``residual + attn(q=q_img, k=k_tok, v=v_tok)`` without projecting the image tokens."""
    h = attn.num_heads
    k = attn.k_proj(k_tok)
    n_tok, d = k.shape
    ch = d // h
    kh = k.reshape(n_tok, h, ch).transpose(0, 1)  # h x N x ch
    scale = 1.0 / math.sqrt(ch)
    g = (kh @ _split_heads_weight(attn.q_proj.weight, h)).reshape(h * n_tok, -1) * scale  # (h*N) x C
    const = (kh @ attn.q_proj.bias.reshape(h, ch, 1)).reshape(h * n_tok, 1) * scale
    scores = torch.addmm(const, g, q_img.T)  # (h*N) x n
    return _image_to_token_out(attn, scores, attn.v_proj(v_tok), n_tok, residual, in_place)


def _image_to_token_pre(attn, q_t: torch.Tensor, k_tok: torch.Tensor, v_tok: torch.Tensor,
                        residual: torch.Tensor) -> torch.Tensor:
    """``residual`` + image->token attention with the image-side queries already projected (block 1)."""
    h = attn.num_heads
    k = attn.k_proj(k_tok)
    n_tok, d = k.shape
    ch = d // h
    kh = k.reshape(n_tok, h, ch).transpose(0, 1) / math.sqrt(ch)
    scores = kh @ q_t  # h x N x n
    return _image_to_token_out(attn, scores.reshape(h * n_tok, -1), attn.v_proj(v_tok), n_tok, residual)


class FastDecoder:
    """Runs a ``Sam`` model's prompt encoder + mask decoder for one prompt set at a time."""

    def __init__(self, model) -> None:
        self.model = model
        self.pe = model.prompt_encoder
        self.dec = model.mask_decoder
        with torch.inference_mode():
            dense_pe = self.pe.get_dense_pe()  # 1 x C x h x w
        self.grid = tuple(dense_pe.shape[-2:])
        self.pos = dense_pe[0].flatten(1).T.contiguous()  # n x C
        self.fast = self._is_standard()
        self._prepared: _Prepared | None = None
        self._up: tuple | None = None
        self._order: tuple | None = None

    def _is_standard(self) -> bool:
        up = self.dec.output_upscaling
        t = self.dec.transformer
        try:
            return (
                len(up) == 5
                and all(isinstance(up[i], torch.nn.ConvTranspose2d) and up[i].kernel_size == (2, 2)
                        and up[i].stride == (2, 2) for i in (0, 3))
                and type(up[1]).__name__ == "LayerNorm2d"
                and type(t).__name__ == "TwoWayTransformer"
            )
        except TypeError:
            return False

    def _prepare(self, key: str, features: torch.Tensor) -> _Prepared:
        if self._prepared is None or self._prepared.key != key:
            x = (features[0].flatten(1).T + self.pe.no_mask_embed.weight).contiguous()  # n x C
            xp = x + self.pos
            block = self.dec.transformer.layers[0]
            t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
            self._prepared = None  # free the previous one first (peak memory)
            self._prepared = _Prepared(
                key, x,
                k1_t=_heads_t(t2i.k_proj(xp), t2i.num_heads),
                v1=_heads_t(t2i.v_proj(x), t2i.num_heads).transpose(1, 2).contiguous(),
                q1_t=_heads_t(i2t.q_proj(xp), i2t.num_heads),
            )
        return self._prepared

    def _transformer(self, prep: _Prepared, tokens: torch.Tensor, rows: list[int]):
        """Output tokens ``rows`` and the image tokens after the two-way transformer.

        The final token->image attention treats each token on its own, so only the tokens that are
        read afterwards (the IoU token and the mask tokens that may be shown) go through it.
        """
        t = self.dec.transformer
        queries = tokens
        keys, keys_pe = prep.x, None  # block 1 reads the image side only through prep's projections
        for i, layer in enumerate(t.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries[None], k=queries[None], v=queries[None])[0]
            else:
                q = (queries + tokens)[None]
                queries = queries + layer.self_attn(q=q, k=q, v=queries[None])[0]
            queries = layer.norm1(queries)
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            if i == 0:
                attn_out = _token_to_image_pre(t2i, queries + tokens, prep.k1_t, prep.v1)
            else:
                attn_out = _token_to_image(t2i, queries + tokens, keys_pe, keys)
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            if i == 0:
                keys = _image_to_token_pre(i2t, prep.q1_t, queries + tokens, queries, keys)
            else:
                keys = _image_to_token(i2t, keys_pe, queries + tokens, queries, keys, in_place=True)
            keys = layer.norm4(keys)
            keys_pe = keys + self.pos
        queries, tokens = queries[rows], tokens[rows]
        queries = t.norm_final_attn(queries + _token_to_image(t.final_attn_token_to_image, queries + tokens,
                                                              keys_pe, keys))
        return queries, keys

    def _upscale_weights(self):
        """The two 2x2/stride-2 transposed convolutions as (C_in, 4*C_out) matrices, sub-pixel major."""
        if self._up is None:
            ct1, _, _, ct2, _ = self.dec.output_upscaling
            self._up = tuple(
                (ct.weight.permute(0, 2, 3, 1).reshape(ct.in_channels, 4 * ct.out_channels).contiguous(),
                 ct.bias.repeat(4).contiguous())
                for ct in (ct1, ct2)
            )
        return self._up

    def _upscale_one(self, keys: torch.Tensor, hyper: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Low-res logits of one mask over the first ``rows`` x ``cols`` grid cells (4x each).

        Runs in bands of grid rows (~``UPSCALE_BAND_CELLS`` cells) so that the 16x larger
        intermediates stay in the CPU cache instead of making several round trips to memory.
        """
        _, ln, act1, ct2, act2 = self.dec.output_upscaling
        (w1, b1), (w2, b2) = self._upscale_weights()
        gh, gw = self.grid
        c, c1, c2 = keys.shape[1], ln.weight.shape[0], ct2.out_channels
        grid = keys.reshape(gh, gw, c)
        m = torch.empty(rows * cols * 16, dtype=keys.dtype, device=keys.device)  # r, c, a, b, a2, b2
        step = max(1, UPSCALE_BAND_CELLS // cols) if keys.device.type == "cpu" else rows
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            x = grid[r0:r1, :cols].reshape(-1, c)
            y = torch.addmm(b1, x, w1).reshape(-1, c1)  # 4 rows per cell: sub-pixel (a, b)
            y = act1(F.layer_norm(y, (c1,), ln.weight, ln.bias, ln.eps))
            z = act2(torch.addmm(b2, y, w2)).reshape(-1, c2)  # 4 rows per y row: sub-pixel (a2, b2)
            torch.mv(z, hyper, out=m[r0 * cols * 16: r1 * cols * 16])
        return m.index_select(0, self._pixel_order(rows, cols)).reshape(4 * rows, 4 * cols)

    def _pixel_order(self, rows: int, cols: int) -> torch.Tensor:
        """Gather indices from (r, c, a, b, a2, b2) order to image order (r, a, a2, c, b, b2): one
        gather is several times faster than the 6-d permute copy."""
        if self._order is None or self._order[0] != (rows, cols):
            idx = torch.arange(rows * cols * 16).reshape(rows, cols, 2, 2, 2, 2).permute(0, 2, 4, 1, 3, 5)
            self._order = ((rows, cols), idx.reshape(-1).to(self.pos.device))
        return self._order[1]

    def _standard(self, features, sparse, dense, multimask):
        """The package's own decoder (fallback for non-standard decoders, and mask prompts)."""
        low, iou = self.dec(image_embeddings=features, image_pe=self.pe.get_dense_pe(),
                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                            multimask_output=multimask)
        best = int(torch.argmax(iou[0])) if multimask else 0
        return low[0, best], float(iou[0, best])

    @torch.inference_mode()
    def predict(self, key: str, features: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool, threshold: float):
        """Mask (bool, original size), score and 256x256 low-res logits for prompts in input-frame pixels."""
        dev = features.device
        points = None
        if coords is not None:
            points = (torch.as_tensor(coords, dtype=torch.float32, device=dev)[None],
                      torch.as_tensor(labels, dtype=torch.int64, device=dev)[None])
        boxes = None if box is None else torch.as_tensor(box, dtype=torch.float32, device=dev).reshape(1, 4)
        masks = None if mask_input is None else torch.as_tensor(mask_input, dtype=torch.float32,
                                                                device=dev).reshape(1, 1, *mask_input.shape[-2:])
        sparse, dense = self.pe(points=points, boxes=boxes, masks=masks)
        h_in, w_in = input_size
        gh, gw = self.grid
        low_h, low_w = 4 * gh, 4 * gw
        if not self.fast or masks is not None:
            low, score = self._standard(features, sparse, dense, multimask)
            block = low
        else:
            prep = self._prepare(key, features)
            out_tokens = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], dim=0)
            tokens = torch.cat([out_tokens, sparse[0]], dim=0)
            n_masks = self.dec.num_mask_tokens
            candidates = list(range(1, n_masks)) if multimask and n_masks > 1 else [0]  # may be shown
            queries, keys = self._transformer(prep, tokens, [0] + [1 + c for c in candidates])
            iou = self.dec.iou_prediction_head(queries[0])
            pick = int(torch.argmax(iou[candidates[0]: candidates[-1] + 1]))
            best = candidates[pick]
            score = float(iou[best])
            hyper = self.dec.output_hypernetworks_mlps[best](queries[1 + pick])
            scale = self.model.image_encoder.img_size // gh  # input pixels per grid cell
            # one grid row/column past the image: the resize below reads up to ~1.4 low-res pixels beyond it
            rows, cols = min(gh, -(-h_in // scale) + 1), min(gw, -(-w_in // scale) + 1)
            block = self._upscale_one(keys, hyper, rows, cols)
            low = torch.full((low_h, low_w), LOW_RES_FILL, dtype=block.dtype, device=dev)
            low[: block.shape[0], : block.shape[1]] = block
        mask = upsample_logits(block, input_size, original_size, self.model.image_encoder.img_size // low_h)
        return (mask > threshold).cpu().numpy(), score, low.float().cpu().numpy()


def upsample_logits(block: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                    factor: int) -> torch.Tensor:
    """SamPredictor's two bilinear resizes (x``factor`` to the padded input, crop, to the original
    size) on one mask, starting from the computed block of low-res logits (not the whole grid)."""
    h_in, w_in = input_size
    x = F.interpolate(block[None, None], scale_factor=factor, mode="bilinear", align_corners=False)
    x = x[..., :h_in, :w_in]
    return F.interpolate(x, original_size, mode="bilinear", align_corners=False)[0, 0]


class PlainDecoder:
    """``SamPredictor`` on a cached embedding: the reference the fast path is checked against,
    and the fallback where that check does not cover the installed package."""

    fast = False

    def __init__(self, model: SamModel) -> None:
        self.predictor = reference_predictor(model)

    @torch.inference_mode()
    def predict(self, key: str, features: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int],
                coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool, threshold: float):
        """Same arguments and results as :meth:`FastDecoder.predict`."""
        pred, dev = self.predictor, features.device
        pred.features, pred.original_size, pred.input_size, pred.is_image_set = (
            features, original_size, input_size, True)
        pc = pl = boxes = masks = None
        if coords is not None:
            pc = torch.as_tensor(coords, dtype=torch.float32, device=dev)[None]
            pl = torch.as_tensor(labels, dtype=torch.int64, device=dev)[None]
        if box is not None:
            boxes = torch.as_tensor(box, dtype=torch.float32, device=dev).reshape(1, 4)
        if mask_input is not None:
            masks = torch.as_tensor(mask_input, dtype=torch.float32, device=dev).reshape(1, 1, *mask_input.shape[-2:])
        logits, iou, low = pred.predict_torch(pc, pl, boxes, masks, multimask_output=multimask, return_logits=True)
        best = int(torch.argmax(iou[0])) if multimask else 0
        mask = (logits[0, best] > threshold).cpu().numpy()
        return mask, float(iou[0, best]), low[0, best].float().cpu().numpy()


def _untested_package(model: SamModel) -> str | None:
    """``"name version"`` of the package providing ``model`` when it is not the tested version."""
    module = SAM_VARIANTS[model.model_type][0]
    dist, tested = TESTED_VERSIONS[module]
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        installed = "of unknown version"
    return None if installed == tested else f"{dist} {installed} (tested: {tested})"


def make_decoder(model: SamModel, fast: bool | None = None) -> FastDecoder | PlainDecoder:
    """The decoder a service uses: ``fast`` None reads :data:`FAST_DECODER_ENV` (default on)."""
    if fast is None:
        fast = os.environ.get(FAST_DECODER_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
    if fast:
        untested = _untested_package(model)
        if untested is None:
            return FastDecoder(model.model)
        warnings.warn(f"the fast SAM decoder was not checked against {untested}; using SamPredictor",
                      RuntimeWarning, stacklevel=3)
    return PlainDecoder(model)
