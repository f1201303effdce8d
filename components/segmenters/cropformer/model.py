"""The CropFormer network (and, with one view and no batch level, the Mask2Former baseline).

Built from transformers' Mask2Former parts — the multi-scale deformable pixel decoder, the
masked-attention decoder layers, the mask-embedding MLP — around a timm backbone:

1. backbone + pixel decoder run once on all T views (full image + crops), as a batch of B·T images;
2. image-level decoder: the standard masked-attention decoder on each view alone (2D sine positions);
3. view association: batch queries start from the full view's final image-level queries and take
   one [cross-attention over all T·Q view queries → self-attention → FFN] step (paper eq. 4);
4. batch-level decoder: the **same** decoder layers, class head and mask head, with memory = every
   view's features flattened over T·HW and a 3D positional encoding (2D sine + sine over the view
   index); masks by einsum("bqc,btchw->bqthw"), so one query predicts its mask in every view.

The decoder loop itself is written here rather than taken from transformers'
``Mask2FormerMaskedAttentionDecoder``: that class computes masks for one view only (the batch level
needs them over T views and attention masks over T·HW keys) and drops whole layers at random in
training with probability ``config.dropout``.

Every decoder returns 1 + L predictions (before the first layer and after each), for deep
supervision. The class head has two logits: [entity, no-object]. Note that a BatchNorm backbone in
training mode normalises over all B·T views together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.layers.backbones import STRIDES, PyramidBackbone
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoderLayer,
    Mask2FormerMLPPredictionHead,
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
    Mask2FormerSinePositionEmbedding,
)

NUM_LEVELS = 3  # the decoder's cross-attention cycles over the 1/32, 1/16 and 1/8 maps
VIEW_CODES = ("corner", "order")


@dataclass
class CropFormerModelConfig:
    """Architecture of the network. Paper defaults: swin/hornet backbone, hidden 256, 100 queries,
    8 heads, FFN 2048, 9 decoder layers, 6 pixel-decoder layers. The defaults here are tiny."""

    backbone: str = "test_resnet"
    hidden_dim: int = 32  # a multiple of 32 (the pixel decoder's GroupNorm has 32 groups)
    num_queries: int = 10
    num_heads: int = 4
    dim_feedforward: int = 64
    decoder_layers: int = 3
    pixel_decoder_layers: int = 1
    pixel_decoder_feedforward: int = 0  # the pixel decoder's FFN width; 0 = dim_feedforward (the release: 1024)
    view_code: str = "corner"  # the 3D encoding's view coordinate: corner (the crop's corner) or order (the release)
    official_association: bool = False  # the release's association: no view code on its keys, no self-attn position
    batch_level: bool = True  # False: image-level decoder only (Mask2Former)


def sine_encoding(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Transformer sine/cosine encoding of scalar positions (N,) → (N, dim)."""
    i = torch.arange(dim, device=positions.device, dtype=torch.float32)
    freq = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / dim)
    angles = positions.float()[:, None] / freq
    return torch.where(i.long() % 2 == 0, angles.sin(), angles.cos())


class ViewAssociation(nn.Module):
    """Batch queries attend to every view's queries, then to each other, then an FFN (post-norm).
    ``self_position``: the self-attention's queries and keys carry the query embedding (the official
    release's carry none)."""

    def __init__(self, dim: int, heads: int, ffn: int, self_position: bool = True) -> None:
        super().__init__()
        self.self_position = self_position
        self.cross_attn = nn.MultiheadAttention(dim, heads)
        self.cross_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads)
        self.self_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Linear(ffn, dim))
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, queries: Tensor, query_pos: Tensor, view_queries: Tensor, view_pos: Tensor) -> Tensor:
        """queries, query_pos: (Q, B, C); view_queries, view_pos: (T·Q, B, C) → (Q, B, C)."""
        out, _ = self.cross_attn(queries + query_pos, view_queries + view_pos, view_queries)
        queries = self.cross_norm(queries + out)
        q = queries + query_pos if self.self_position else queries
        out, _ = self.self_attn(q, q, queries)
        queries = self.self_norm(queries + out)
        return self.ffn_norm(queries + self.ffn(queries))


class CropFormerModel(nn.Module):
    """forward(views (B, T, 3, H, W), normalised, H and W multiples of 32) → dict with

    * ``image``: 1 + L dicts {``logits`` (B, T, Q, 2), ``masks`` (B, T, Q, H/4, W/4)};
    * ``batch``: 1 + L dicts {``logits`` (B, Q, 2), ``masks`` (B, Q, T, H/4, W/4)} (absent when
      ``batch_level`` is off).
    The last entry of each list is the final prediction.
    """

    def __init__(self, config: CropFormerModelConfig) -> None:
        super().__init__()
        self.config = c = config
        if c.hidden_dim % 32 or c.hidden_dim % c.num_heads:
            raise ValueError(f"hidden_dim {c.hidden_dim} must be a multiple of 32 and of num_heads {c.num_heads}")
        if c.view_code not in VIEW_CODES:
            raise ValueError(f"view_code {c.view_code!r} is not one of {', '.join(VIEW_CODES)}")
        m2f = Mask2FormerConfig(
            feature_size=c.hidden_dim, mask_feature_size=c.hidden_dim, hidden_dim=c.hidden_dim,
            encoder_feedforward_dim=c.pixel_decoder_feedforward or c.dim_feedforward,
            dim_feedforward=c.dim_feedforward,
            encoder_layers=c.pixel_decoder_layers, decoder_layers=c.decoder_layers + 1,
            num_attention_heads=c.num_heads, num_queries=c.num_queries, dropout=0.0, pre_norm=False,
            common_stride=4, feature_strides=list(STRIDES), num_labels=1,
        )
        self.backbone = PyramidBackbone(c.backbone)
        self.pixel_decoder = Mask2FormerPixelDecoder(m2f, feature_channels=self.backbone.channels)
        dim = c.hidden_dim
        self.position_2d = Mask2FormerSinePositionEmbedding(num_position_features=dim // 2, normalize=True)
        self.level_embed = nn.Embedding(NUM_LEVELS, dim)
        self.query_feat = nn.Embedding(c.num_queries, dim)
        self.query_pos = nn.Embedding(c.num_queries, dim)
        self.layers = nn.ModuleList(Mask2FormerMaskedAttentionDecoderLayer(m2f) for _ in range(c.decoder_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, 2)
        self.mask_head = Mask2FormerMLPPredictionHead(dim, dim, dim, num_layers=3)
        self.association = ViewAssociation(dim, c.num_heads, c.dim_feedforward, not c.official_association) \
            if c.batch_level else None
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mask2Former's initialisation of the parts the transformers modules leave to their
        PreTrainedModel (the pixel decoder's level embedding is allocated uninitialised there)."""
        nn.init.normal_(self.pixel_decoder.level_embed)
        for m in self.modules():
            if isinstance(m, Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
                nn.init.zeros_(m.sampling_offsets.weight)
                theta = torch.arange(m.n_heads).float() * (2.0 * math.pi / m.n_heads)
                grid = torch.stack([theta.cos(), theta.sin()], -1)
                grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(m.n_heads, 1, 1, 2)
                grid = grid.repeat(1, m.n_levels, m.n_points, 1)
                grid *= torch.arange(1, m.n_points + 1).float().view(1, 1, -1, 1)
                m.sampling_offsets.bias.copy_(grid.flatten())
                nn.init.zeros_(m.attention_weights.weight)
                nn.init.zeros_(m.attention_weights.bias)
                for lin in (m.value_proj, m.output_proj):
                    nn.init.xavier_uniform_(lin.weight)
                    nn.init.zeros_(lin.bias)
        for layer in self.layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            nn.init.zeros_(layer.cross_attn.in_proj_bias)

    # ------------------------------------------------------------------ parts
    def _predict(self, hidden: Tensor, mask_features: Tensor, level_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """hidden (Q, B, C) → class logits (B, Q, 2), mask logits and the next layer's attention mask.

        ``mask_features`` is (B, C, h, w) for one view, or (B, T, C, h, w) for the batch level
        (masks (B, Q, T, h, w); the attention mask then spans T·HW keys)."""
        normed = self.decoder_norm(hidden).transpose(0, 1)  # (B, Q, C)
        logits = self.class_head(normed)
        embed = self.mask_head(normed)
        if mask_features.dim() == 4:
            masks = torch.einsum("bqc,bchw->bqhw", embed, mask_features)
            small = F.interpolate(masks, size=level_size, mode="bilinear", align_corners=False)
        else:
            masks = torch.einsum("bqc,btchw->bqthw", embed, mask_features)
            b, q, t, h, w = masks.shape
            small = F.interpolate(masks.flatten(0, 1), size=level_size, mode="bilinear", align_corners=False)
            small = small.view(b, q, t, *level_size)
        blocked = small.flatten(2).sigmoid() < 0.5  # (B, Q, keys)
        blocked[blocked.all(-1)] = False  # a query that would see nothing sees everything
        blocked = blocked.repeat_interleave(self.config.num_heads, dim=0).detach()
        return logits, masks, blocked

    def _decode(self, queries: Tensor, query_pos: Tensor, memory: list[Tensor], memory_pos: list[Tensor],
                mask_features: Tensor, sizes: list[tuple[int, int]]) -> tuple[list[dict[str, Tensor]], Tensor]:
        """The masked-attention decoder loop, shared by the image level and the batch level."""
        logits, masks, blocked = self._predict(queries, mask_features, sizes[0])
        outputs = [{"logits": logits, "masks": masks}]
        for i, layer in enumerate(self.layers):
            level = i % NUM_LEVELS
            queries = layer(
                queries, level, None, memory_pos, query_pos, memory, encoder_attention_mask=blocked
            )[0]
            logits, masks, blocked = self._predict(queries, mask_features, sizes[(i + 1) % NUM_LEVELS])
            outputs.append({"logits": logits, "masks": masks})
        return outputs, queries

    # ------------------------------------------------------------------ forward
    def forward(self, views: Tensor, view_ids: Tensor | None = None) -> dict[str, list[dict[str, Tensor]]]:
        """``view_ids`` (B, T) int: the index each view's 3D positional encoding uses (default 0..T−1).
        CropFormer passes 0 for the full view and 1 + the crop's corner (TL 1, TR 2, BL 3, BR 4), so a
        training sample with one random crop sees the same encodings as the four crops at test.
        ``view_code: order`` (the release's) ignores them: the coordinate is the view's place in ``views``."""
        b, t = views.shape[:2]
        q, dim = self.config.num_queries, self.config.hidden_dim
        feats = self.backbone(views.flatten(0, 1))
        pix = self.pixel_decoder(feats)
        mask_features = pix.mask_features  # (B·T, C, H/4, W/4)
        levels = pix.multi_scale_features[:NUM_LEVELS]  # low → high resolution
        sizes = [tuple(f.shape[-2:]) for f in levels]
        memory = [(f.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
                  for i, f in enumerate(levels)]  # (HW, B·T, C)
        pos = [self.position_2d(f.shape, f.device, f.dtype).flatten(2).permute(2, 0, 1) for f in levels]

        # Image level: every view alone.
        query_pos = self.query_pos.weight[:, None].repeat(1, b * t, 1)
        queries = self.query_feat.weight[:, None].repeat(1, b * t, 1)
        image_out, view_queries = self._decode(queries, query_pos, memory, pos, mask_features, sizes)
        result = {"image": [
            {"logits": o["logits"].view(b, t, q, 2), "masks": o["masks"].view(b, t, q, *o["masks"].shape[-2:])}
            for o in image_out
        ]}
        if self.association is None:
            return result

        # View association: batch queries from the full view's final queries.
        view_queries = view_queries.view(q, b, t, dim)
        if self.config.view_code == "order":  # the release: 2π(t+1)/T over the views' order, whatever they show
            coordinate = 2 * math.pi * (torch.arange(t, device=views.device) + 1) / (t + 1e-6)
            view_index = sine_encoding(coordinate, dim)[None].expand(b, t, dim)
        else:
            if view_ids is None:
                view_ids = torch.arange(t, device=views.device).expand(b, t)
            view_index = sine_encoding(view_ids.reshape(-1), dim).view(b, t, dim)  # (B, T, C)
        all_queries = view_queries.permute(2, 0, 1, 3).reshape(t * q, b, dim)
        keys_code = torch.zeros_like(view_index) if self.config.official_association else view_index
        all_pos = self.query_pos.weight[None, :, None] + keys_code.transpose(0, 1)[:, None]  # (T, Q, B, C)
        batch_pos = self.query_pos.weight[:, None].repeat(1, b, 1)
        batch_queries = self.association(view_queries[:, :, 0], batch_pos, all_queries, all_pos.reshape(t * q, b, dim))

        # Batch level: the same layers over all views' features (3D positions).
        def over_views(x: Tensor) -> Tensor:  # (HW, B·T, C) → (T·HW, B, C)
            hw = x.shape[0]
            return x.view(hw, b, t, dim).permute(2, 0, 1, 3).reshape(t * hw, b, dim)

        batch_memory = [over_views(m) for m in memory]
        batch_pos_3d = [over_views(p + view_index.reshape(b * t, dim)[None]) for p in pos]
        batch_features = mask_features.view(b, t, *mask_features.shape[1:])
        batch_out, _ = self._decode(batch_queries, batch_pos, batch_memory, batch_pos_3d, batch_features, sizes)
        result["batch"] = batch_out
        return result
