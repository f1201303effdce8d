"""The official CropFormer release into esgkit: a state dict with exactly the release's key set and
shapes (built here, at a small geometry, from the module structure ``official.py`` documents) maps key
for key onto esgkit's CropFormer in its release mode, the fused projections split in q, k, v order;
``esgkit convert`` writes weights and a config that ``esgkit run`` takes; other checkpoints are refused
naming their keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from esgkit.components.segmenters.cropformer.model import CropFormerModel, CropFormerModelConfig
from esgkit.components.segmenters.cropformer.official import convert_state, official_geometry
from esgkit.core.errors import CheckpointError
from esgkit.layers.backbones import D2_SWIN
from esgkit.layers.hornet import HORNET
from esgkit.layers.weights import load_state

D, HEADS, QUERIES, FFN, PIXEL_FFN, LAYERS, PIXEL_LAYERS = 32, 4, 6, 64, 48, 3, 2
SWIN = D2_SWIN["d2_swin_test"]
HORNET_TEST = HORNET["d2_hornet_test"]


def official_state(seed: int = 0, crops: bool = True, backbone: str = "swin") -> dict[str, torch.Tensor]:
    """The release's keys and shapes (D2SwinTransformer or D2HorNet, MSDeformAttnPixelDecoder,
    CropSharedMultiScaleMaskedTransformerDecoder with Make3dQueries, the two criteria), random values."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def add(key: str, *shape: int) -> None:
        state[key] = torch.randn(*shape, generator=g)

    def norm(key: str, width: int) -> None:
        add(f"{key}.weight", width)
        add(f"{key}.bias", width)

    def linear(key: str, out: int, inp: int) -> None:
        add(f"{key}.weight", out, inp)
        add(f"{key}.bias", out)

    def attention(key: str) -> None:  # nn.MultiheadAttention
        add(f"{key}.in_proj_weight", 3 * D, D)
        add(f"{key}.in_proj_bias", 3 * D)
        linear(f"{key}.out_proj", D, D)

    if backbone == "hornet":
        c0 = hornet_backbone(add, norm, linear)
    else:
        c0 = swin_backbone(add, norm, linear, state)
    pixel_and_decoder(add, norm, linear, attention, c0, crops)
    state.update({"criterion_2d.empty_weight": torch.ones(2), "criterion_3d.empty_weight": torch.ones(2)} if crops
                 else {"criterion.empty_weight": torch.ones(2)})  # the Mask2Former baseline: one criterion
    return state


def hornet_backbone(add, norm, linear) -> int:
    """D2HorNet: stem and downsamplings, blocks with gnconv (7×7 depthwise, or the global-local filter),
    the stage norms."""
    g = HORNET_TEST
    dims = [g.base_dim * 2**k for k in range(4)]
    add("backbone.downsample_layers.0.0.weight", dims[0], 3, 4, 4)
    add("backbone.downsample_layers.0.0.bias", dims[0])
    norm("backbone.downsample_layers.0.1", dims[0])
    for k in range(1, 4):
        norm(f"backbone.downsample_layers.{k}.0", dims[k - 1])
        add(f"backbone.downsample_layers.{k}.1.weight", dims[k], dims[k - 1], 2, 2)
        add(f"backbone.downsample_layers.{k}.1.bias", dims[k])
    for s, (c, depth, order, spectral) in enumerate(zip(dims, g.depths, g.orders, g.spectral)):
        widths = [c // 2**k for k in range(order)][::-1]
        total = sum(widths)
        for b in range(depth):
            block = f"backbone.stages.{s}.{b}"
            norm(f"{block}.norm1", c)
            add(f"{block}.gnconv.proj_in.weight", 2 * c, c, 1, 1)
            add(f"{block}.gnconv.proj_in.bias", 2 * c)
            if spectral:
                add(f"{block}.gnconv.dwconv.dw.weight", total // 2, 1, 3, 3)
                add(f"{block}.gnconv.dwconv.complex_weight", total // 2, *spectral, 2)
                norm(f"{block}.gnconv.dwconv.pre_norm", total)
                norm(f"{block}.gnconv.dwconv.post_norm", total)
            else:
                add(f"{block}.gnconv.dwconv.weight", total, 1, 7, 7)
                add(f"{block}.gnconv.dwconv.bias", total)
            add(f"{block}.gnconv.proj_out.weight", c, c, 1, 1)
            add(f"{block}.gnconv.proj_out.bias", c)
            for k in range(order - 1):
                add(f"{block}.gnconv.pws.{k}.weight", widths[k + 1], widths[k], 1, 1)
                add(f"{block}.gnconv.pws.{k}.bias", widths[k + 1])
            norm(f"{block}.norm2", c)
            linear(f"{block}.pwconv1", 4 * c, c)
            linear(f"{block}.pwconv2", c, 4 * c)
            add(f"{block}.gamma1", c)
            add(f"{block}.gamma2", c)
        norm(f"backbone.norm{s}", c)
    return dims[0]


def swin_backbone(add, norm, linear, state) -> int:
    """D2SwinTransformer: patch embedding, blocks (fused qkv, relative position table and index),
    patch merging, the stage norms."""
    c0, w = SWIN["embed_dim"], SWIN["window_size"]
    add("backbone.patch_embed.proj.weight", c0, 3, 4, 4)
    add("backbone.patch_embed.proj.bias", c0)
    norm("backbone.patch_embed.norm", c0)
    for s, (depth, heads) in enumerate(zip(SWIN["depths"], SWIN["num_heads"])):
        c = c0 * 2**s
        for b in range(depth):
            block = f"backbone.layers.{s}.blocks.{b}"
            norm(f"{block}.norm1", c)
            linear(f"{block}.attn.qkv", 3 * c, c)
            linear(f"{block}.attn.proj", c, c)
            add(f"{block}.attn.relative_position_bias_table", (2 * w - 1) ** 2, heads)
            state[f"{block}.attn.relative_position_index"] = torch.zeros(w * w, w * w, dtype=torch.long)
            norm(f"{block}.norm2", c)
            linear(f"{block}.mlp.fc1", 4 * c, c)
            linear(f"{block}.mlp.fc2", c, 4 * c)
        if s < 3:
            add(f"backbone.layers.{s}.downsample.reduction.weight", 2 * c, 4 * c)
            norm(f"backbone.layers.{s}.downsample.norm", 4 * c)
        norm(f"backbone.norm{s}", c)
    return c0


def pixel_and_decoder(add, norm, linear, attention, c0: int, crops: bool) -> None:
    """MSDeformAttnPixelDecoder and the shared masked-attention decoder, with Make3dQueries (``crops``)."""
    pix = "sem_seg_head.pixel_decoder"
    for i, channels in enumerate((c0 * 8, c0 * 4, c0 * 2)):  # res5, res4, res3
        add(f"{pix}.input_proj.{i}.0.weight", D, channels, 1, 1)
        add(f"{pix}.input_proj.{i}.0.bias", D)
        norm(f"{pix}.input_proj.{i}.1", D)
    add(f"{pix}.transformer.level_embed", 3, D)
    for n in range(PIXEL_LAYERS):
        layer = f"{pix}.transformer.encoder.layers.{n}"
        linear(f"{layer}.self_attn.sampling_offsets", HEADS * 3 * 4 * 2, D)
        linear(f"{layer}.self_attn.attention_weights", HEADS * 3 * 4, D)
        linear(f"{layer}.self_attn.value_proj", D, D)
        linear(f"{layer}.self_attn.output_proj", D, D)
        norm(f"{layer}.norm1", D)
        linear(f"{layer}.linear1", PIXEL_FFN, D)
        linear(f"{layer}.linear2", D, PIXEL_FFN)
        norm(f"{layer}.norm2", D)
    add(f"{pix}.mask_features.weight", D, D, 1, 1)
    add(f"{pix}.mask_features.bias", D)
    add(f"{pix}.adapter_1.weight", D, c0, 1, 1)
    norm(f"{pix}.adapter_1.norm", D)
    add(f"{pix}.layer_1.weight", D, D, 3, 3)
    norm(f"{pix}.layer_1.norm", D)

    dec = "sem_seg_head.predictor"
    for i in range(LAYERS):
        attention(f"{dec}.transformer_self_attention_layers.{i}.self_attn")
        norm(f"{dec}.transformer_self_attention_layers.{i}.norm", D)
        attention(f"{dec}.transformer_cross_attention_layers.{i}.multihead_attn")
        norm(f"{dec}.transformer_cross_attention_layers.{i}.norm", D)
        linear(f"{dec}.transformer_ffn_layers.{i}.linear1", FFN, D)
        linear(f"{dec}.transformer_ffn_layers.{i}.linear2", D, FFN)
        norm(f"{dec}.transformer_ffn_layers.{i}.norm", D)
    norm(f"{dec}.decoder_norm", D)
    add(f"{dec}.query_feat.weight", QUERIES, D)
    add(f"{dec}.query_embed.weight", QUERIES, D)
    add(f"{dec}.level_embed.weight", 3, D)
    linear(f"{dec}.class_embed", 2, D)
    for k in range(3):
        linear(f"{dec}.mask_embed.layers.{k}", D, D)
    if not crops:  # the release's Mask2Former baseline: no view association
        return
    attention(f"{dec}.make_3d.enc_crosattn_3d.0.multihead_attn")
    norm(f"{dec}.make_3d.enc_crosattn_3d.0.norm", D)
    attention(f"{dec}.make_3d.enc_selfattn_3d.0.self_attn")
    norm(f"{dec}.make_3d.enc_selfattn_3d.0.norm", D)
    linear(f"{dec}.make_3d.enc_ffn_3d.0.linear1", FFN, D)
    linear(f"{dec}.make_3d.enc_ffn_3d.0.linear2", D, FFN)
    norm(f"{dec}.make_3d.enc_ffn_3d.0.norm", D)


def test_every_key_of_the_release_maps_onto_the_network_in_release_mode():
    official = official_state()
    geometry = official_geometry(official)
    assert geometry["backbone"] == "d2_swin_test"
    assert (geometry["hidden_dim"], geometry["num_heads"], geometry["num_queries"]) == (D, HEADS, QUERIES)
    assert (geometry["dim_feedforward"], geometry["pixel_decoder_feedforward"]) == (FFN, PIXEL_FFN)
    assert (geometry["decoder_layers"], geometry["pixel_decoder_layers"]) == (LAYERS, PIXEL_LAYERS)
    model_keys = {k for k in CropFormerModelConfig.__dataclass_fields__} - {"batch_level"}
    model = CropFormerModel(CropFormerModelConfig(**{k: v for k, v in geometry.items() if k in model_keys}))
    state = convert_state(official)
    load_state(model, state, "converted release")  # strict: nothing missing, nothing left over, shapes equal
    assert set(state) == set(model.state_dict())

    d = D
    qkv = official["sem_seg_head.predictor.transformer_self_attention_layers.1.self_attn.in_proj_weight"]
    for k, name in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(model.layers[1].self_attn.get_parameter(f"{name}.weight"), qkv[k * d:(k + 1) * d])
    c = SWIN["embed_dim"] * 4
    swin_qkv = official["backbone.layers.2.blocks.1.attn.qkv.bias"]
    converted = state["backbone.body.swin.encoder.layers.2.blocks.1.attention.k_proj.bias"]
    assert torch.equal(converted, swin_qkv[c:2 * c])
    assert torch.equal(state["backbone.body.hidden_states_norms.stage1.weight"], official["backbone.norm0.weight"])
    assert torch.equal(model.query_pos.weight, official["sem_seg_head.predictor.query_embed.weight"])
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 5, 3, 64, 96))  # full view + 4 crops
    assert out["batch"][-1]["masks"].shape == (1, QUERIES, 5, 16, 24)


def test_the_hornet_release_maps_onto_esgkits_hornet():
    official = official_state(2, backbone="hornet")
    geometry = official_geometry(official)
    assert geometry["backbone"] == "d2_hornet_test"
    model_keys = {k for k in CropFormerModelConfig.__dataclass_fields__} - {"batch_level"}
    model = CropFormerModel(CropFormerModelConfig(**{k: v for k, v in geometry.items() if k in model_keys}))
    load_state(model, convert_state(official), "converted HorNet release")  # strict
    torch.testing.assert_close(model.backbone.body.stages[3][0].gnconv.dwconv.complex_weight,
                               official["backbone.stages.3.0.gnconv.dwconv.complex_weight"])
    with torch.no_grad():  # 96×128: the spectra (6×5, 3×3 at strides 16, 32) are not the filters' sizes
        feats = model.backbone(torch.rand(1, 3, 96, 128))
        out = model.eval()(torch.rand(1, 2, 3, 96, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 24, 32), (32, 12, 16), (64, 6, 8), (128, 3, 4)]
    assert torch.isfinite(out["batch"][-1]["masks"]).all()


def test_the_releases_mask2former_baseline_converts_to_the_mask2former_segmenter():
    from esgkit.core import get_registry

    official = official_state(crops=False)
    geometry = official_geometry(official)
    assert geometry["name"] == "mask2former" and "view_code" not in geometry
    segmenter = get_registry().build("segmenter", geometry)  # the geometry is a valid mask2former section
    load_state(segmenter.model, convert_state(official), "converted Mask2Former release")


def test_convert_writes_weights_and_a_config_that_runs(tmp_path, cli):
    from safetensors.torch import load_file

    from esgkit.core.io import save_image

    official = official_state(1)
    torch.save({"model": official, "iteration": 99}, tmp_path / "model_final.pth")  # detectron2's layout
    result = cli("convert", "cropformer", str(tmp_path / "model_final.pth"), "--out", str(tmp_path / "converted"))
    assert result.returncode == 0, result.stderr
    written = load_file(str(tmp_path / "converted" / "cropformer.safetensors"))
    expected = convert_state(official)
    assert set(written) == set(expected) and all(torch.equal(written[k], expected[k]) for k in expected)
    config = yaml.safe_load((tmp_path / "converted" / "cropformer.yaml").read_text())
    assert config["segmenter"]["view_code"] == "order" and config["segmenter"]["official_association"] is True
    save_image(tmp_path / "photo.png", np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    run = cli("run", str(tmp_path / "converted" / "cropformer.yaml"), "--image", str(tmp_path / "photo.png"),
              "--out", str(tmp_path / "run"), "segmenter.short_side=64", "segmenter.max_long_side=96")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "masks.json").is_file()


def test_other_checkpoints_are_refused_naming_their_keys():
    official = official_state()
    official["sem_seg_head.predictor.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(CheckpointError, match=r"map to nothing.*extra_head\.weight"):
        convert_state(official)
    wider = official_state(backbone="hornet")
    wider["backbone.downsample_layers.0.0.weight"] = torch.zeros(24, 3, 4, 4)
    with pytest.raises(CheckpointError, match="none of esgkit's release geometries"):
        official_geometry(wider)
    with pytest.raises(CheckpointError, match="no sem_seg_head.predictor.query_feat.weight"):
        official_geometry({"backbone.patch_embed.proj.weight": torch.zeros(1)})
