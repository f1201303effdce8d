"""The Table XX alternatives to the colormap (ESG paper, "Other Mask Encoder and Decoder
Alternatives"): mask decoders whose queries ARE the input entities — query i is entity i — so the
entity masks reach GELLA here only, never through a colormap encoder.

* ``roi_align`` ("Region feature extraction: RoI Align on CLIP feature"): entity i's embedding is
  ``torchvision.ops.roi_align`` over the CLIP patch features Z_v with the bounding box of entity i's
  mask (``output_size`` × ``output_size`` cells), flattened and projected by an MLP. The box's
  corners (normalised to the square) join the pooled features — not the paper: the crop alone does
  not say where in the image the box lies.
* ``mask_attention`` ("Incorporating mask weights into the CA"): the entity embeddings start as the
  CLIP features averaged inside each entity's mask, through an MLP (the paper starts them from
  CropFormer's queries, which a generic segmenter does not have), and are refined by ``layers``
  blocks of cross-attention to Z_v, self-attention among the entities and a feed-forward net
  (Mask2Former's order, post-norm). In the cross-attention every head's logits for entity i get its
  mask m_i on the patch grid (the share of each Z_v patch the mask covers), by ``mask_in_attention``:

  - ``add`` ("Adding mask in CA"): logits + w·m_i, w learnable per layer and head, starting at 1
    (the mask added as it is);
  - ``multiply`` ("Multiply mask in CA"): the softmax weights × m_i, renormalised over the patches.
    Computed as softmax(logits + log m_i), which is the same thing, with log m_i floored at
    log(1e-30): an empty mask (a padded entity, or one too small to cover a patch) then attends to
    every patch as plain attention does (Mask2Former's rule for an empty attention mask), never NaN.

  Self-attention ignores padded and empty entities as keys (unless an image has no other).
  Position: CLIP's patch features carry their own position embedding; no other is added.

Input (``input_kind = "masks"``): Z_v (B, h·w, C) with the vision encoder's (h, w) patch grid, and
the entity masks as the GELLA pipeline feeds ``binary_mask_pool``: float (B, N, S, S) on the padded
``mask_size`` square (the same square as the CLIP input), all-zero masks for padding. ``configure``
(the colormap pyramid) sizes nothing; ``configure_vision(C)`` builds the weights.

Output (``MaskDecoderOutput``): E_vc (B, N, D), entityness (B, N, 2), and stride-4 mask logits
(B, N, S/4, S/4): each (layer-normed) embedding's MLP dotted with per-pixel features made from Z_v
(projected, bilinearly upsampled to S/4, a 3×3 and a 1×1 convolution), so GELLA's L_seg and the
reconstruction evaluation run unchanged. How well they can reconstruct the input masks is bounded by
Z_v's patch grid: the masks steer which features an entity reads, nothing more — what Table XX
compares. ``mask_attention`` gives the initial and every intermediate layer's predictions as ``aux``
(deep supervision); ``region_features`` is None.

In the GELLA pipeline (``queries_are_entities``) these decoders take Z_v and the masks directly; the
colormap encoder and fuser of the config are still built (their slots stay) but are not run, and
query i maps to entity i. Training matches queries to entities the same way (identity, no Hungarian).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from esgkit.core import CompatibilityError, ConfigError, MaskDecoder, MaskDecoderOutput

MASK_MODES = ("add", "multiply")
LOG_FLOOR = 1e-30  # multiply: log m floored here, so an empty mask gives plain attention, not NaN


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(B, N, S, S) masks → (B, N, 4) boxes x0, y0, x1, y1 in pixels (cell edges) around the cells
    > 0.5; an empty mask gets the whole square."""
    b, n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros(b, 0, 4)
    on = masks > 0.5
    cols, rows = on.any(2), on.any(3)                                         # (B, N, W), (B, N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    x0, x1 = torch.where(cols, xs, w).amin(-1), torch.where(cols, xs + 1, 0).amax(-1)
    y0, y1 = torch.where(rows, ys, h).amin(-1), torch.where(rows, ys + 1, 0).amax(-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(masks.dtype)
    empty = ~cols.any(-1)
    return torch.where(empty[..., None], boxes.new_tensor([0.0, 0.0, w, h]), boxes)


def patch_cover(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, N, S, S) masks → (B, N, h·w): the share of each patch of the (h, w) grid each mask covers."""
    b, n = masks.shape[:2]
    if n == 0:
        return masks.new_zeros(b, 0, grid[0] * grid[1])
    return F.adaptive_avg_pool2d(masks, grid).flatten(2)


class EntityQueryDecoder(nn.Module, MaskDecoder):
    """Shared part of the decoders whose queries are the input entities (see the module docstring):
    the per-pixel features, the prediction heads and the checks; a family adds ``build`` and
    ``entity_states``."""

    queries_are_entities: ClassVar[bool] = True  # the GELLA pipeline feeds Z_v + masks; query i ↔ entity i
    input_kind: ClassVar[str] = "masks"          # what mask_input gives: the masks, not a colormap

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.hidden_dim < 1:
            raise ConfigError(f"must be >= 1, got {config.hidden_dim}", key="mask_decoder.hidden_dim")
        self.config = config
        self.vision_dim: int | None = None

    @property
    def embed_dim(self) -> int:
        return int(self.config.hidden_dim)

    def configure(self, pyramid_channels: tuple[int, ...]) -> None:
        """The colormap pyramid is not read by these decoders: nothing to size (``configure_vision``)."""

    def configure_vision(self, vision_dim: int) -> None:
        """Build the weights for Z_v of ``vision_dim`` channels (called by the pipeline at build time)."""
        vision_dim = int(vision_dim)
        if self.vision_dim is not None:
            if self.vision_dim != vision_dim:
                raise CompatibilityError(f"{type(self).__name__} was built for vision_dim {self.vision_dim}, "
                                         f"not {vision_dim}")
            return
        self.vision_dim = vision_dim
        d = self.embed_dim
        self.tokens = nn.Sequential(nn.Linear(vision_dim, d), nn.LayerNorm(d))
        self.pixel = nn.Sequential(nn.Conv2d(d, d, 3, padding=1), nn.GELU(), nn.Conv2d(d, d, 1))
        self.norm = nn.LayerNorm(d)
        self.entityness = nn.Linear(d, 2)
        self.mask_embed = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.build(vision_dim)

    def build(self, vision_dim: int) -> None:
        raise NotImplementedError

    def entity_states(self, z_v: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int],
                      masks: torch.Tensor) -> list[torch.Tensor]:
        """(B, N, D) entity states, one per prediction (the last is the output; the others ``aux``)."""
        raise NotImplementedError

    def forward(self, z_v: torch.Tensor, grid: tuple[int, int], masks: torch.Tensor) -> MaskDecoderOutput:
        """Z_v (B, h·w, C) on the ``grid`` (h, w), masks (B, N, S, S) → one query per entity."""
        if self.vision_dim is None:
            raise CompatibilityError(f"{type(self).__name__} used before configure_vision(vision_dim)")
        gh, gw = int(grid[0]), int(grid[1])
        b, length, _ = z_v.shape
        if length != gh * gw or masks.dim() != 4 or masks.shape[0] != b:
            raise CompatibilityError(f"{type(self).__name__} takes Z_v (B, h·w, C) on the grid {(gh, gw)} and masks "
                                     f"(B, N, S, S); got {tuple(z_v.shape)} and {tuple(masks.shape)}")
        masks = masks.to(z_v.dtype)
        tokens = self.tokens(z_v)                                                 # (B, h·w, D)
        side = masks.shape[-1] // 4
        grid_map = tokens.transpose(1, 2).reshape(b, self.embed_dim, gh, gw)
        pixel = self.pixel(F.interpolate(grid_map, size=(side, side), mode="bilinear", align_corners=False))
        preds = [self.predict(state, pixel) for state in self.entity_states(z_v, tokens, (gh, gw), masks)]
        last = preds[-1]
        return MaskDecoderOutput(embeddings=last["embeddings"], entityness=last["entityness"], masks=last["masks"],
                                 aux=preds[:-1])

    def predict(self, state: torch.Tensor, pixel: torch.Tensor) -> dict[str, torch.Tensor]:
        e = self.norm(state)
        masks = torch.einsum("bnd,bdhw->bnhw", self.mask_embed(e), pixel)
        return {"embeddings": e, "entityness": self.entityness(e), "masks": masks}


class RoiAlignMaskDecoder(EntityQueryDecoder):
    """Table XX "RoI Align on CLIP feature": E_vc of each entity = MLP(RoI-Align of Z_v in its box, box)."""

    @dataclass
    class Config:
        hidden_dim: int = 32     # D of E_vc
        output_size: int = 2     # RoI-Align cells per box side (the paper does not say)
        sampling_ratio: int = 2  # bilinear samples per cell side (torchvision's sampling_ratio)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.output_size < 1:
            raise ConfigError(f"must be >= 1, got {config.output_size}", key="mask_decoder.output_size")
        if config.sampling_ratio < 1:
            raise ConfigError(f"must be >= 1, got {config.sampling_ratio}", key="mask_decoder.sampling_ratio")

    def build(self, vision_dim: int) -> None:
        d, r = self.embed_dim, self.config.output_size
        self.region = nn.Sequential(nn.Linear(vision_dim * r * r + 4, d), nn.GELU(), nn.Linear(d, d))

    def entity_states(self, z_v: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int],
                      masks: torch.Tensor) -> list[torch.Tensor]:
        from torchvision.ops import roi_align

        b, n, side = masks.shape[0], masks.shape[1], masks.shape[-1]
        gh, gw = grid
        r = self.config.output_size
        boxes = mask_boxes(masks)                                                 # (B, N, 4) mask pixels
        if n:
            feats = z_v.transpose(1, 2).reshape(b, -1, gh, gw)
            on_grid = boxes * boxes.new_tensor([gw, gh, gw, gh]) / side             # the same square, in patches
            index = torch.arange(b, device=z_v.device, dtype=z_v.dtype).repeat_interleave(n)
            rois = torch.cat([index[:, None], on_grid.reshape(-1, 4)], dim=1)
            pooled = roi_align(feats, rois, output_size=r, spatial_scale=1.0,
                               sampling_ratio=self.config.sampling_ratio, aligned=True).flatten(1)
        else:
            pooled = z_v.new_zeros(0, z_v.shape[-1] * r * r)
        parts = torch.cat([pooled, (boxes / side).reshape(-1, 4)], dim=1)
        return [self.region(parts).reshape(b, n, self.embed_dim)]


class _Attention(nn.Module):
    """Multi-head attention with an additive bias on the logits (B, 1 | heads, N, L)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h, length = self.heads, context.shape[1]
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)                       # (B, H, N, d/H)
        k = self.k(context).view(b, length, h, d // h).transpose(1, 2)
        v = self.v(context).view(b, length, h, d // h).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # softmax(qk/√d + bias)·v
        return self.out(attended.transpose(1, 2).reshape(b, n, d))


class _MaskBlock(nn.Module):
    """Cross-attention to Z_v with the entity's mask in the logits, self-attention, feed-forward."""

    def __init__(self, dim: int, heads: int, feedforward: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.cross, self.self_attn = _Attention(dim, heads), _Attention(dim, heads)
        self.ffn = nn.Sequential(nn.Linear(dim, feedforward), nn.GELU(), nn.Linear(feedforward, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        if mode == "add":
            self.mask_weight = nn.Parameter(torch.ones(heads))

    def mask_bias(self, cover: torch.Tensor) -> torch.Tensor:
        """(B, N, L) patch cover → (B, 1 | H, N, L) bias of the cross-attention logits."""
        if self.mode == "add":
            return self.mask_weight.view(1, -1, 1, 1) * cover[:, None]
        return cover.float().clamp_min(LOG_FLOOR).log()[:, None]

    def forward(self, state: torch.Tensor, tokens: torch.Tensor, cover: torch.Tensor,
                key_bias: torch.Tensor) -> torch.Tensor:
        state = self.norms[0](state + self.cross(state, tokens, self.mask_bias(cover)))
        state = self.norms[1](state + self.self_attn(state, state, key_bias))
        return self.norms[2](state + self.ffn(state))


class MaskAttentionMaskDecoder(EntityQueryDecoder):
    """Table XX "mask weights in the CA": entity embeddings from their masks' CLIP features, refined by
    cross-attention to Z_v with the mask added to (``add``) or multiplied into (``multiply``) it."""

    @dataclass
    class Config:
        mask_in_attention: str = "add"  # add: logits + w·m (w learnable, starts at 1) | multiply: weights × m,
                                        # renormalised (an empty mask attends everywhere)
        hidden_dim: int = 32            # D of E_vc (a multiple of heads)
        heads: int = 2
        layers: int = 2                 # cross-attention + self-attention + feed-forward blocks
        dim_feedforward: int = 64

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.mask_in_attention not in MASK_MODES:
            raise ConfigError(f"got {config.mask_in_attention!r}; use {' or '.join(MASK_MODES)}",
                              key="mask_decoder.mask_in_attention")
        if config.heads < 1 or config.hidden_dim % config.heads:
            raise ConfigError(f"hidden_dim {config.hidden_dim} must be a multiple of heads {config.heads}",
                              key="mask_decoder.heads")
        if config.layers < 1:
            raise ConfigError(f"needs at least 1 block, got {config.layers}", key="mask_decoder.layers")

    def build(self, vision_dim: int) -> None:
        c, d = self.config, self.embed_dim
        self.init = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(_MaskBlock(d, c.heads, c.dim_feedforward, c.mask_in_attention)
                                    for _ in range(c.layers))

    def entity_states(self, z_v: torch.Tensor, tokens: torch.Tensor, grid: tuple[int, int],
                      masks: torch.Tensor) -> list[torch.Tensor]:
        cover = patch_cover(masks, grid)                                          # (B, N, h·w)
        area = cover.sum(-1, keepdim=True)
        state = self.init(cover @ tokens / area.clamp_min(1e-6))                  # mean inside the mask (0: empty)
        empty = area[..., 0] <= 0                                                 # padded or too small
        empty = empty & ~empty.all(1, keepdim=True)                               # an image of only empties: keep all
        key_bias = torch.zeros_like(cover[:, None, None, :, 0]).masked_fill(empty[:, None, None], float("-inf"))
        states = [state]
        for block in self.blocks:
            state = block(state, tokens, cover, key_bias)
            states.append(state)
        return states


__all__ = ["EntityQueryDecoder", "MaskAttentionMaskDecoder", "RoiAlignMaskDecoder", "mask_boxes", "patch_cover"]
