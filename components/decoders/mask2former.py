"""The GELLA mask decoder: Mask2Former's multi-scale deformable pixel decoder and masked-attention
transformer decoder (transformers' own building blocks, unmodified) fed by the fused pyramid, plus
an entityness head (2 logits: entity / no entity) on every decoder layer."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from esgkit.core import CompatibilityError, ConfigError, MaskDecoder, MaskDecoderOutput


class Mask2FormerMaskDecoder(nn.Module, MaskDecoder):
    """Mask2Former pixel decoder + masked-attention decoder → E_vc, entityness, stride-4 masks (tiny default)."""

    @dataclass
    class Config:
        num_queries: int = 8        # paper: 100
        hidden_dim: int = 32        # paper: 256 (must be a multiple of 32: GroupNorm(32))
        heads: int = 2              # paper: 8
        dim_feedforward: int = 64   # paper: 2048
        encoder_layers: int = 1     # deformable pixel-decoder layers (paper: 6)
        encoder_feedforward_dim: int = 64  # paper: 1024
        decoder_layers: int = 3     # predictions = layers incl. the initial one (paper: 10 = 9 layers + initial)
        entity_pooling: bool = False  # E_vc of a query += MLP(stride-4 features mean-pooled over its entity's
                                      # input mask, + log area); not in the paper (see pool_regions)
        silhouette_size: int = 0      # with entity_pooling: the entity's mask cropped to its square bounding box at
                                      # S×S joins the pooled features (its shape); 0 = off

    def __init__(self, config: Any) -> None:
        super().__init__()
        if config.hidden_dim % 32:
            raise ConfigError(f"got {config.hidden_dim}; Mask2Former's GroupNorm(32) needs a multiple of 32",
                              key="hidden_dim")
        if config.decoder_layers < 1:
            raise ConfigError("needs at least 1 (the initial prediction)", key="decoder_layers")
        self.config = config
        self.pyramid_channels: tuple[int, ...] | None = None

    def _m2f_config(self) -> Any:
        from transformers import Mask2FormerConfig

        c = self.config
        return Mask2FormerConfig(
            backbone_config=None, feature_size=c.hidden_dim, mask_feature_size=c.hidden_dim,
            hidden_dim=c.hidden_dim, num_attention_heads=c.heads, dim_feedforward=c.dim_feedforward,
            encoder_layers=c.encoder_layers, encoder_feedforward_dim=c.encoder_feedforward_dim,
            decoder_layers=c.decoder_layers, num_queries=c.num_queries, feature_strides=(4, 8, 16, 32),
            common_stride=4, dropout=0.0)

    def configure(self, pyramid_channels: tuple[int, ...]) -> None:
        from transformers.models.mask2former import modeling_mask2former as m2f

        pyramid_channels = tuple(int(ch) for ch in pyramid_channels)
        if self.pyramid_channels is not None:
            if self.pyramid_channels != pyramid_channels:
                raise CompatibilityError(f"mask2former mask decoder was built for pyramid channels "
                                         f"{self.pyramid_channels}, not {pyramid_channels}")
            return
        if len(pyramid_channels) != 4:
            raise CompatibilityError(f"mask2former mask decoder needs 4 pyramid levels (strides 4-32); got {pyramid_channels}")
        cfg = self._m2f_config()
        self.pyramid_channels = pyramid_channels
        self.pixel_decoder = m2f.Mask2FormerPixelDecoder(cfg, feature_channels=list(pyramid_channels))
        self.transformer = m2f.Mask2FormerTransformerModule(in_features=cfg.feature_size, config=cfg)
        self.entityness = nn.Linear(cfg.hidden_dim, 2)
        if self.config.entity_pooling:
            width = cfg.hidden_dim + pyramid_channels[0] + 1 + self.config.silhouette_size ** 2
            self.pooled = nn.Sequential(nn.Linear(width, cfg.hidden_dim), nn.GELU(), nn.Linear(cfg.hidden_dim, cfg.hidden_dim))
        # Its level_embed is made with the legacy torch.Tensor(), which ignores a `with torch.device`
        # context (e.g. meta for profiling): put it where the other weights are.
        device = self.entityness.weight.device
        if self.pixel_decoder.level_embed.device != device:
            self.pixel_decoder.level_embed = nn.Parameter(torch.empty_like(self.pixel_decoder.level_embed, device=device))
        # transformers initialises these blocks in Mask2FormerPreTrainedModel._init_weights; apply the
        # same rules here (the pixel decoder's level_embed is otherwise left uninitialised).
        holder = types.SimpleNamespace(config=cfg)
        kinds = (m2f.Mask2FormerTransformerModule, m2f.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
                 m2f.Mask2FormerMaskedAttentionDecoderLayer, m2f.Mask2FormerPixelDecoder)
        for module in self.modules():
            if isinstance(module, kinds):
                m2f.Mask2FormerPreTrainedModel._init_weights(holder, module)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight)

    @property
    def embed_dim(self) -> int:
        return int(self.config.hidden_dim)

    def forward(self, pyramid: list[torch.Tensor]) -> MaskDecoderOutput:
        if self.pyramid_channels is None:
            raise CompatibilityError("mask2former mask decoder used before configure(pyramid_channels)")
        pixel = self.pixel_decoder(list(pyramid), return_dict=True)
        # The transformer module wants low → high resolution levels (strides 32, 16, 8).
        out = self.transformer(list(pixel.multi_scale_features), pixel.mask_features)
        hidden = [h.transpose(0, 1) for h in out.intermediate_hidden_states]  # each (B, q, D), layer-normed
        masks = list(out.masks_queries_logits)                                  # each (B, q, H/4, W/4)
        logits = [self.entityness(h) for h in hidden]
        aux = [{"embeddings": h, "entityness": e, "masks": m} for h, e, m in zip(hidden[:-1], logits[:-1], masks[:-1])]
        region_features = None
        if self.config.entity_pooling:
            level = pyramid[0]
            if level.shape[-2:] != pixel.mask_features.shape[-2:]:
                level = nn.functional.interpolate(level, size=pixel.mask_features.shape[-2:], mode="bilinear",
                                                  align_corners=False)
            region_features = torch.cat([pixel.mask_features, level.to(pixel.mask_features.dtype)], dim=1)
        return MaskDecoderOutput(embeddings=hidden[-1], entityness=logits[-1], masks=masks[-1], aux=aux,
                                 region_features=region_features)

    def pool_regions(self, out: MaskDecoderOutput, regions: torch.Tensor,
                     silhouettes: torch.Tensor | None = None) -> torch.Tensor:
        """``entity_pooling``: E_vc (B, q, D) + MLP([mean of ``out.region_features`` over each
        query's region, log(1 + region area), its silhouette]); ``regions`` (B, q, H/4, W/4) weights
        in [0, 1] — the pipeline gives each query its entity's input mask; ``silhouettes``
        (B, q, S²) with ``silhouette_size`` S (zeros for a query without an entity).

        Why: E_vc must carry the entity's colour, texture, shape and size, but the queries' states
        are shaped by reconstructing the masks, and a decoder trained from scratch on a CPU budget
        reconstructs small entities poorly (mean IoU 0.34 for entities under 400 px in the previous
        shipped model); a linear probe read an entity's colour from its E_vc 46 % of the time, its
        shape at chance. Pooling over the entity's own mask — as open-vocabulary segmenters pool
        CLIP features over masks — hands the association the entity's features however well the
        query reconstructs it. Mean features carry colour and texture but not shape, hence the
        optional silhouette (from the full-resolution mask, so small entities keep their shape)."""
        if out.region_features is None or not self.config.entity_pooling:
            raise CompatibilityError("pool_regions needs a mask2former decoder built with entity_pooling: true")
        feats = out.region_features
        weights = regions.to(feats.dtype)
        area = weights.flatten(2).sum(-1, keepdim=True)
        pooled = torch.einsum("bqhw,bchw->bqc", weights, feats) / area.clamp_min(1e-3)
        parts = [pooled, torch.log1p(area)]
        size = self.config.silhouette_size
        if size:
            want = (*regions.shape[:2], size * size)
            if silhouettes is None or tuple(silhouettes.shape) != want:
                got = None if silhouettes is None else tuple(silhouettes.shape)
                raise CompatibilityError(f"silhouette_size {size} needs silhouettes of shape {want}; got {got}")
            parts.append(silhouettes.to(feats.dtype))
        return out.embeddings + self.pooled(torch.cat(parts, dim=-1))
