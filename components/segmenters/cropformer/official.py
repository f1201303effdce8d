"""The official CropFormer release → esgkit's CropFormer: key mapping and geometry, for ``esgkit convert``.

The release (github.com/qqlu/Entity, ``Entityv2/CropFormer``) ships detectron2 ``{"model": state_dict}``
``.pth`` files. Their key families, read from the reference modules (the test builds exactly this key
set at a small geometry, ``tests/components/segmenters/test_cropformer_official.py``):

* ``backbone.*`` — ``D2HorNet`` (``backbone/hornet.py``: ``downsample_layers``, ``stages.{s}.{b}.{norm1,
  gnconv.{proj_in, dwconv (a 7×7 depthwise conv, or dw + complex_weight + pre/post_norm), proj_out, pws},
  norm2, pwconv1, pwconv2, gamma1, gamma2}``, ``norm{s}``: esgkit's ``layers.hornet`` keeps these names), or
  ``D2SwinTransformer`` (``mask2former/modeling/backbone/swin.py``):
  ``patch_embed.{proj, norm}``; ``layers.{s}.blocks.{b}.{norm1, attn.{qkv (3C, C), proj,
  relative_position_bias_table ((2w−1)², heads), relative_position_index}, norm2, mlp.{fc1, fc2}}``;
  ``layers.{s}.downsample.{reduction, norm}`` (s < 3); ``norm{s}``, the LayerNorm of each stage's output.
* ``sem_seg_head.pixel_decoder.*`` — ``MSDeformAttnPixelDecoder`` (``pixel_decoder/msdeformattn.py``):
  ``input_proj.{i}.{0 conv, 1 GroupNorm}`` (res5, res4, res3), ``transformer.level_embed``,
  ``transformer.encoder.layers.{n}.{self_attn.{sampling_offsets, attention_weights, value_proj,
  output_proj}, norm1, linear1 (1024, D), linear2, norm2}``, ``mask_features``, ``adapter_1.{weight,
  norm}``, ``layer_1.{weight, norm}``.
* ``sem_seg_head.predictor.*`` — ``CropSharedMultiScaleMaskedTransformerDecoder``
  (``transformer_decoder/cropformer_transformer_decoder.py``): per layer ``transformer_self_attention_layers``
  (``self_attn`` + ``norm``), ``transformer_cross_attention_layers`` (``multihead_attn`` + ``norm``),
  ``transformer_ffn_layers`` (``linear1``, ``linear2``, ``norm``); ``decoder_norm``, ``query_feat``,
  ``query_embed``, ``level_embed``, ``class_embed`` (2: entity, no object), ``mask_embed.layers.{0,1,2}``;
  ``make_3d.{enc_crosattn_3d, enc_selfattn_3d, enc_ffn_3d}.0.*`` (the view association). The image
  level and the batch level share every decoder weight, as esgkit's CropFormer does.
* ``criterion_2d.empty_weight``, ``criterion_3d.empty_weight`` (``criterion.empty_weight`` in the
  Mask2Former baseline): training only, dropped.

The release's Mask2Former baseline (``mask2former_swin_*_3x``: no ``make_3d``) converts to the
``mask2former`` segmenter. The names on esgkit's side are those of transformers' Mask2Former and Swin
modules; the decoder's self-attention ``in_proj`` and Swin's ``qkv`` are split into q, k, v. The release
computes a few things differently from esgkit's defaults, so the converted config sets ``pixel_decoder_feedforward`` (1024),
``view_code: order`` and ``official_association: true``, and uses ``d2_swin_*`` (detectron2's Swin,
through transformers) or ``d2_hornet_large`` (``layers/hornet.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from esgkit.core.errors import CheckpointError
from esgkit.layers.backbones import D2_SWIN
from esgkit.layers.hornet import HORNET, HorNetGeometry
from esgkit.layers.weights import key_names

PIXEL = "sem_seg_head.pixel_decoder."
DECODER = "sem_seg_head.predictor."
DROPPED = re.compile(r"^criterion(_\w+)?\.empty_weight$|relative_position_index$|attn_mask$")

Rule = tuple[str, str]
RULES: list[Rule] = [  # (official pattern, esgkit replacement): the whole key must match
    # backbone: detectron2's Swin → transformers' SwinBackbone (PyramidBackbone.body)
    (r"backbone\.patch_embed\.proj\.(\w+)", r"backbone.body.swin.embeddings.patch_embeddings.projection.\1"),
    (r"backbone\.patch_embed\.norm\.(\w+)", r"backbone.body.swin.embeddings.norm.\1"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.(\w+)",
     r"backbone.body.swin.encoder.layers.\1.blocks.\2.layernorm_before.\3"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.(\w+)",
     r"backbone.body.swin.encoder.layers.\1.blocks.\2.layernorm_after.\3"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.(\w+)",
     r"backbone.body.swin.encoder.layers.\1.blocks.\2.attention.o_proj.\3"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
     r"backbone.body.swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.(fc\d)\.(\w+)",
     r"backbone.body.swin.encoder.layers.\1.blocks.\2.mlp.\3.\4"),
    (r"backbone\.layers\.(\d+)\.downsample\.(reduction|norm)\.(\w+)",
     r"backbone.body.swin.encoder.layers.\1.downsample.\2.\3"),
    # pixel decoder: MSDeformAttnPixelDecoder → transformers' Mask2FormerPixelDecoder
    (r"PIXinput_proj\.(\d+)\.(\d+)\.(\w+)", r"pixel_decoder.input_projections.\1.\2.\3"),
    (r"PIXtransformer\.level_embed", r"pixel_decoder.level_embed"),
    (r"PIXtransformer\.encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(\w+)",
     r"pixel_decoder.encoder.layers.\1.self_attn.\2.\3"),
    (r"PIXtransformer\.encoder\.layers\.(\d+)\.norm1\.(\w+)",
     r"pixel_decoder.encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"PIXtransformer\.encoder\.layers\.(\d+)\.norm2\.(\w+)", r"pixel_decoder.encoder.layers.\1.final_layer_norm.\2"),
    (r"PIXtransformer\.encoder\.layers\.(\d+)\.linear([12])\.(\w+)", r"pixel_decoder.encoder.layers.\1.fc\2.\3"),
    (r"PIXmask_features\.(\w+)", r"pixel_decoder.mask_projection.\1"),
    (r"PIX(adapter_1|layer_1)\.weight", r"pixel_decoder.\1.0.weight"),
    (r"PIX(adapter_1|layer_1)\.norm\.(\w+)", r"pixel_decoder.\1.1.\2"),
    # decoder (shared by the image and the batch level)
    (r"DECtransformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\.(\w+)", r"layers.\1.self_attn.out_proj.\2"),
    (r"DECtransformer_self_attention_layers\.(\d+)\.norm\.(\w+)", r"layers.\1.self_attn_layer_norm.\2"),
    (r"DECtransformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)", r"layers.\1.cross_attn.\2"),
    (r"DECtransformer_cross_attention_layers\.(\d+)\.norm\.(\w+)", r"layers.\1.cross_attn_layer_norm.\2"),
    (r"DECtransformer_ffn_layers\.(\d+)\.linear([12])\.(\w+)", r"layers.\1.fc\2.\3"),
    (r"DECtransformer_ffn_layers\.(\d+)\.norm\.(\w+)", r"layers.\1.final_layer_norm.\2"),
    (r"DEC(decoder_norm\.\w+|query_feat\.weight|level_embed\.weight)", r"\1"),
    (r"DECquery_embed\.weight", r"query_pos.weight"),
    (r"DECclass_embed\.(\w+)", r"class_head.\1"),
    (r"DECmask_embed\.layers\.(\d+)\.(\w+)", r"mask_head.\1.0.\2"),
    # view association (Make3dQueries, one layer in the release)
    (r"DECmake_3d\.enc_crosattn_3d\.0\.multihead_attn\.(.+)", r"association.cross_attn.\1"),
    (r"DECmake_3d\.enc_crosattn_3d\.0\.norm\.(\w+)", r"association.cross_norm.\1"),
    (r"DECmake_3d\.enc_selfattn_3d\.0\.self_attn\.(.+)", r"association.self_attn.\1"),
    (r"DECmake_3d\.enc_selfattn_3d\.0\.norm\.(\w+)", r"association.self_norm.\1"),
    (r"DECmake_3d\.enc_ffn_3d\.0\.linear1\.(\w+)", r"association.ffn.0.\1"),
    (r"DECmake_3d\.enc_ffn_3d\.0\.linear2\.(\w+)", r"association.ffn.2.\1"),
    (r"DECmake_3d\.enc_ffn_3d\.0\.norm\.(\w+)", r"association.ffn_norm.\1"),
]
COMPILED = [(re.compile(p.replace("PIX", re.escape(PIXEL)).replace("DEC", re.escape(DECODER))), r) for p, r in RULES]


def _split_qkv(prefix: str, kind: str, tensor: torch.Tensor, names: tuple[str, str, str]) -> dict[str, torch.Tensor]:
    """A fused (3C, …) projection as three (C, …) ones, in q, k, v order."""
    return {f"{prefix}.{name}.{kind}": part.clone() for name, part in zip(names, tensor.chunk(3, dim=0))}


SPLITS: list[tuple[re.Pattern[str], Callable[[re.Match[str], torch.Tensor], dict[str, torch.Tensor]]]] = [
    (re.compile(r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)"),
     lambda m, t: _split_qkv(f"backbone.body.swin.encoder.layers.{m[1]}.blocks.{m[2]}.attention", m[3], t,
                             ("q_proj", "k_proj", "v_proj"))),
    (re.compile(rf"{re.escape(DECODER)}transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)"),
     lambda m, t: _split_qkv(f"layers.{m[1]}.self_attn", m[2], t, ("q_proj", "k_proj", "v_proj"))),
    (re.compile(r"backbone\.norm(\d)\.(weight|bias)"),
     lambda m, t: {f"backbone.body.hidden_states_norms.stage{int(m[1]) + 1}.{m[2]}": t}),
]


def convert_state(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's state dict in esgkit's CropFormer names (``CropFormerModel``); training-only
    buffers dropped. A key no rule maps is a CheckpointError listing every such key."""
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    hornet = _is_hornet(official)
    for key, tensor in official.items():
        if DROPPED.search(key):
            continue
        if hornet and key.startswith("backbone."):  # esgkit's HorNet keeps the release's module names
            out[f"backbone.body.{key[len('backbone.'):]}"] = tensor
            continue
        for pattern, split in SPLITS:
            if m := pattern.fullmatch(key):
                out.update(split(m, tensor))
                break
        else:
            for pattern, replacement in COMPILED:
                if pattern.fullmatch(key):
                    out[pattern.sub(replacement, key)] = tensor
                    break
            else:
                unmapped.append(key)
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} key(s) of the checkpoint map to nothing in esgkit's CropFormer: "
                              f"{key_names(unmapped)}; is it an official CropFormer (or Mask2Former) release?")
    return out


def _is_hornet(official: Mapping[str, Any]) -> bool:
    return any(k.startswith("backbone.stages.") for k in official)


def _backbone(official: Mapping[str, torch.Tensor], shape: Callable[[str], tuple[int, ...]]) -> str:
    """The ``D2_SWIN`` / ``HORNET`` preset whose geometry the release's backbone tensors show."""
    if _is_hornet(official):
        stages = range(4)
        depths = [_count(official, rf"backbone\.stages\.{s}\.(\d+)\..*") for s in stages]
        orders = [_count(official, rf"backbone\.stages\.{s}\.0\.gnconv\.pws\.(\d+)\..*") + 1 for s in stages]
        spectral = [tuple(official[f"backbone.stages.{s}.0.gnconv.dwconv.complex_weight"].shape[1:3])
                    if f"backbone.stages.{s}.0.gnconv.dwconv.complex_weight" in official else None for s in stages]
        found = HorNetGeometry(base_dim=shape("backbone.downsample_layers.0.0.weight")[0], depths=depths,
                               orders=orders, spectral=spectral)
        presets = {name: (g.base_dim, g.depths, g.orders, g.spectral) for name, g in HORNET.items()}
        wanted = (found.base_dim, found.depths, found.orders, found.spectral)
    else:
        presets = dict(D2_SWIN)
        wanted = {"embed_dim": shape("backbone.patch_embed.proj.weight")[0],
                  "depths": [_count(official, rf"backbone\.layers\.{s}\.blocks\.(\d+)\..*") for s in range(4)],
                  "num_heads": [shape(f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table")[1]
                                for s in range(4)],
                  "window_size": (math.isqrt(shape("backbone.layers.0.blocks.0.attn.relative_position_bias_table")[0])
                                  + 1) // 2}
    name = next((n for n, geometry in presets.items() if geometry == wanted), None)
    if name is None:
        raise CheckpointError(f"its backbone ({wanted}) is none of esgkit's release geometries ({', '.join(presets)})")
    return name


def _count(state: Mapping[str, Any], pattern: str) -> int:
    found = {int(m[1]) for k in state if (m := re.fullmatch(pattern, k))}
    return max(found) + 1 if found else 0


def official_geometry(official: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ``cropformer`` segmenter keys that rebuild the release's network, read off its shapes:
    hidden size, queries, heads, widths, layer counts and the backbone preset (``D2_SWIN``, ``HORNET``)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in official:
            raise CheckpointError(f"the checkpoint has no {key}: not an official CropFormer release")
        return tuple(official[key].shape)

    queries, dim = shape(f"{DECODER}query_feat.weight")
    layers = _count(official, rf"{re.escape(DECODER)}transformer_ffn_layers\.(\d+)\..*")
    backbone = _backbone(official, shape)
    # the head count shows in the deformable attention's offsets: heads × 3 levels × 4 points × (x, y)
    heads = shape(f"{PIXEL}transformer.encoder.layers.0.self_attn.sampling_offsets.weight")[0] // (3 * 4 * 2)
    geometry = {"name": "cropformer", "backbone": backbone, "hidden_dim": dim, "num_queries": queries,
                "num_heads": heads, "dim_feedforward": shape(f"{DECODER}transformer_ffn_layers.0.linear1.weight")[0],
                "decoder_layers": layers,
                "pixel_decoder_layers": _count(official, rf"{re.escape(PIXEL)}transformer\.encoder\.layers\.(\d+)\..*"),
                "pixel_decoder_feedforward": shape(f"{PIXEL}transformer.encoder.layers.0.linear1.weight")[0],
                "view_code": "order", "official_association": True, "short_side": 800, "max_long_side": 1333}
    if not any(k.startswith(f"{DECODER}make_3d.") for k in official):  # the release's Mask2Former baseline
        geometry["name"] = "mask2former"
        del geometry["view_code"], geometry["official_association"]
    return geometry


__all__ = ["convert_state", "official_geometry"]
