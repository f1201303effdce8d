"""CropFormer's inference fusion at the original resolution, in bounded memory.

Per view (full image, then crops) and query, as the reference does: upsample the mask logits to the
padded network input (bilinear), cut the padding, resize to the view's region in original pixels
(bilinear), sigmoid. Per pixel, the full view's probability is averaged with every crop covering it:

    P_q(x) = [σM_full(x) + Σ_{crops v covering x} σM_v(x)] / (1 + #covering crops)

Non-overlap: binarise P_q > 0.5 and paint queries in ascending score order (higher scores win, ties
by query order); each query's mask is then ``labels == q`` and its final score s_q × mean P_q over
that mask. No NMS. Queries whose mask ends up empty are dropped.

A Q×H×W float tensor at the original resolution does not fit in memory for large images (9.6 GB for
100 queries at 24 MP), so the work is chunked: queries in groups of ``chunk_queries``, output rows in
bands sized so a band holds at most ``band_elements`` values per group (small bands: the buffers
are reused by the allocator instead of being mapped afresh, which is faster). The second resize is done
separably — 1-D linear along rows, then a gather + lerp down columns (the taps of
``F.interpolate(mode="bilinear", align_corners=False)``) — so each band only touches the input rows
it needs. Peak memory is then the
two (H, W) maps kept across chunks (winner rank int16/int32 and its probability, float32) plus the
chunk buffers: about 6 bytes per pixel + a few hundred MB. Queries whose logits never exceed the
threshold's logit in any view are skipped (they cannot paint a pixel).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from esgkit.core import EntityMasks

from .crops import Region


@dataclass
class FusedMasks:
    """``labels`` (H, W) int: the winning query per pixel, −1 where none; ``scores`` (Q,) final
    scores (0 for queries with an empty mask)."""

    labels: np.ndarray
    scores: np.ndarray

    def kept(self) -> np.ndarray:
        """Query indices with a non-empty mask, highest score first."""
        present = np.unique(self.labels)
        present = present[present >= 0]
        return present[np.argsort(-self.scores[present], kind="stable")]

    def iter_masks(self) -> Iterator[tuple[int, np.ndarray, float]]:
        """(query, bool (H, W) mask, score) of each kept query, highest score first, one mask in
        memory at a time (the bounded-memory way to write RLEs of a huge image). The mask array is
        reused from one entity to the next: copy it to keep it."""
        mask = np.empty(self.labels.shape, bool)
        for q in self.kept():
            np.equal(self.labels, q, out=mask)
            yield int(q), mask, float(self.scores[q])

    def to_entity_masks(self) -> EntityMasks:
        """One bool mask per kept query (N, H, W), ids = query indices. N·H·W bytes."""
        keep = self.kept()
        h, w = self.labels.shape
        masks = np.zeros((len(keep), h, w), bool)
        for i, q in enumerate(keep):
            np.equal(self.labels, q, out=masks[i])
        return EntityMasks(masks, self.scores[keep], ids=keep.astype(np.int64))


def bilinear_taps(in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source indices and weights of 1-D bilinear resizing (align_corners=False, no antialias), as
    torch's ``upsample_bilinear2d`` computes them: out[j] = w0[j]·in[i0[j]] + w1[j]·in[i1[j]]."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, dtype=torch.float64) + 0.5) * scale - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    w1 = (src - i0).float()
    return i0, i1, 1.0 - w1, w1


def _coverage(regions: Sequence[Region], rows: tuple[int, int], width: int) -> Tensor:
    """(R, W) number of views covering each pixel of the rows [r0, r1)."""
    r0, r1 = rows
    count = torch.zeros(r1 - r0, width)
    for reg in regions:
        a, b = max(reg.y0, r0), min(reg.y1, r1)
        if a < b:
            count[a - r0 : b - r0, reg.x0 : reg.x1] += 1
    return count


def _probability_band(inputs: Tensor, regions: Sequence[Region], taps: list, rows: tuple[int, int],
                      width: int) -> Tensor:
    """P (k, R, W) for the output rows [r0, r1): each view's logits (T, k, h_in, w_in) resized to its
    region (separable bilinear, only the input rows the band needs), sigmoid, averaged over the views
    covering each pixel."""
    r0, r1 = rows
    total = torch.zeros(inputs.shape[1], r1 - r0, width)
    for v, reg in enumerate(regions):
        a, b = max(reg.y0, r0), min(reg.y1, r1)
        if a >= b:
            continue
        yi0, yi1, yw0, yw1 = taps[v]
        ys = slice(a - reg.y0, b - reg.y0)
        lo, hi = int(yi0[ys].min()), int(yi1[ys].max()) + 1
        # Horizontal: 1-D linear resizing has the same taps as bilinear's x direction.
        horiz = F.interpolate(inputs[v, :, lo:hi], size=reg.width, mode="linear", align_corners=False)
        top = horiz.index_select(1, yi0[ys] - lo)
        vert = top.lerp_(horiz.index_select(1, yi1[ys] - lo), yw1[ys, None])  # w0·top + w1·bottom
        total[:, a - r0 : b - r0, reg.x0 : reg.x1] += vert.sigmoid_()
    return total.div_(_coverage(regions, rows, width))


def _view_inputs(mask_logits: Tensor, padded: tuple[int, int], input_size: tuple[int, int]) -> Tensor:
    """Step 1: logits (T, k, h, w) → the padded input size (bilinear), padding cut."""
    logits = mask_logits.detach().float().cpu()
    up = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    return up[..., : input_size[0], : input_size[1]]


def fused_probabilities(mask_logits: Tensor, regions: Sequence[Region], input_size: tuple[int, int],
                        image_size: tuple[int, int], padded_size: tuple[int, int] | None = None) -> Tensor:
    """The averaged probabilities P (Q, H, W) at the original resolution, whole (small images, tests)."""
    padded = padded_size or (4 * mask_logits.shape[-2], 4 * mask_logits.shape[-1])
    taps = [bilinear_taps(input_size[0], r.height) for r in regions]
    with torch.no_grad():
        return _probability_band(_view_inputs(mask_logits, padded, input_size), regions, taps,
                                 (0, image_size[0]), image_size[1])


def fuse_views(
    mask_logits: Tensor,
    class_scores: Tensor,
    regions: Sequence[Region],
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    padded_size: tuple[int, int] | None = None,
    threshold: float = 0.5,
    chunk_queries: int = 8,
    band_elements: int = 1 << 19,
    score_threshold: float = 0.0,
) -> FusedMasks:
    """Fuse per-view mask logits into non-overlapping masks at the original resolution.

    mask_logits: (T, Q, h, w), the network's masks for each view (view 0 = full image), at 1/4 of
    the padded input ``padded_size`` (default (4h, 4w)); ``input_size`` = (h_in, w_in) the unpadded
    input every view was resized to; ``regions`` each view's region in the original image of size
    ``image_size`` = (H, W); ``class_scores`` (Q,) the entity probabilities s_q; queries with
    s_q < ``score_threshold`` (the paper's entityness threshold; 0 = none, as the reference fusion)
    paint no pixel.
    """
    t, nq, fh, fw = mask_logits.shape
    if len(regions) != t:
        raise ValueError(f"{t} views of mask logits but {len(regions)} regions")
    height, width = image_size
    padded = padded_size or (4 * fh, 4 * fw)
    scores = class_scores.detach().float().cpu()
    order = torch.argsort(scores, stable=True)  # ascending: later paints win
    rank = torch.empty(nq, dtype=torch.long)
    rank[order] = torch.arange(nq)

    rank_dtype = torch.int16 if nq < 2**15 - 1 else torch.int32
    best_rank = torch.full((height, width), -1, dtype=rank_dtype)
    best_prob = torch.zeros(height, width)
    taps = [bilinear_taps(input_size[0], r.height) for r in regions]

    # Resizing is a convex combination, so a query whose logits stay ≤ logit(threshold) in every view
    # can never pass the threshold: skip it (exact, and most of a trained model's queries).
    with torch.no_grad():
        peak = mask_logits.detach().float().amax(dim=(0, 2, 3)).sigmoid().cpu()
    active = torch.nonzero((peak > threshold) & (scores >= score_threshold)).flatten()
    for c0 in range(0, len(active), chunk_queries):
        chunk = active[c0 : c0 + chunk_queries]
        k = len(chunk)
        with torch.no_grad():
            # Step 1 for this chunk: logits → padded input size, padding cut. (T, k, h_in, w_in)
            inputs = _view_inputs(mask_logits[:, chunk.to(mask_logits.device)], padded, input_size)
            chunk_rank = rank[chunk].to(rank_dtype).view(k, 1, 1)
            band = max(1, band_elements // (k * width))
            for r0 in range(0, height, band):
                r1 = min(r0 + band, height)
                prob = _probability_band(inputs, regions, taps, (r0, r1), width)
                candidate = torch.where(prob > threshold, chunk_rank, torch.tensor(-1, dtype=rank_dtype))
                cand_rank, cand_idx = candidate.max(0)
                cand_prob = prob.gather(0, cand_idx[None])[0]
                wins = cand_rank > best_rank[r0:r1]
                best_rank[r0:r1][wins] = cand_rank[wins]
                best_prob[r0:r1][wins] = cand_prob[wins]

    # Labels and final scores s_q × mean P_q over the painted mask, band by band.
    labels = np.full((height, width), -1, np.int32)
    order_np = order.numpy()
    area = np.zeros(nq, np.float64)
    prob_sum = np.zeros(nq, np.float64)
    rows = max(1, band_elements // width)
    for r0 in range(0, height, rows):
        r = best_rank[r0 : r0 + rows].numpy().astype(np.int64)
        painted = r >= 0
        q = order_np[r[painted]]
        labels[r0 : r0 + rows][painted] = q
        area += np.bincount(q, minlength=nq)
        prob_sum += np.bincount(q, weights=best_prob[r0 : r0 + rows].numpy()[painted], minlength=nq)
    mean_prob = np.divide(prob_sum, area, out=np.zeros(nq), where=area > 0)
    final = (scores.numpy().astype(np.float64) * mean_prob).astype(np.float32)
    return FusedMasks(labels, final)


def fuse_views_reference(
    mask_logits: Tensor, class_scores: Tensor, regions: Sequence[Region], input_size: tuple[int, int],
    image_size: tuple[int, int], padded_size: tuple[int, int] | None = None, threshold: float = 0.5,
) -> FusedMasks:
    """The same fusion written the direct way (whole Q×H×W tensors, ``F.interpolate`` twice), for
    small images and tests."""
    t, nq, fh, fw = mask_logits.shape
    height, width = image_size
    padded = padded_size or (4 * fh, 4 * fw)
    h_in, w_in = input_size
    total = torch.zeros(nq, height, width)
    count = torch.zeros(height, width)
    for v, reg in enumerate(regions):
        up = F.interpolate(mask_logits[v : v + 1].float(), size=padded, mode="bilinear", align_corners=False)
        up = up[..., :h_in, :w_in]
        up = F.interpolate(up, size=(reg.height, reg.width), mode="bilinear", align_corners=False)[0]
        total[:, reg.y0 : reg.y1, reg.x0 : reg.x1] += up.sigmoid()
        count[reg.y0 : reg.y1, reg.x0 : reg.x1] += 1
    prob = total / count
    scores = class_scores.float()
    labels = torch.full((height, width), -1, dtype=torch.long)
    for q in torch.argsort(scores, stable=True).tolist():
        labels[prob[q] > threshold] = q
    final = np.zeros(nq, np.float32)
    for q in range(nq):
        m = labels == q
        if m.any():
            final[q] = float(scores[q] * prob[q][m].mean())
    return FusedMasks(labels.numpy().astype(np.int32), final)
