"""Colormap encoders: every registered one builds from its tiny default and returns NCHW levels at
strides 4, 8, 16, 32; the binary-mask alternative pools per entity; checkpoints load strictly."""

import pytest
import torch

from esgkit.components.encoders.colormap.timm_backbones import _TINY_SWIN
from esgkit.core import CheckpointError, ConfigError, get_registry

REGISTRY = get_registry()
NAMES = REGISTRY.names("colormap_encoder")


def _input(encoder, size=128, n=3):
    if encoder.input_kind == "masks":
        masks = torch.zeros(1, n, size, size)
        for k in range(n):
            masks[0, k, k * 20:(k + 1) * 20 + 10, 10:60] = 1
        return masks
    return torch.rand(1, 3, size, size)


def test_paper_presets_are_registered():
    assert {"mobilenetv2", "swin_tiny", "swin_large", "timm", "binary_mask_pool"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_pyramid_shapes_and_gradients(name):
    encoder = REGISTRY.build("colormap_encoder", {"name": name})
    x = _input(encoder)
    feats = encoder(x)
    assert len(feats) == 4
    for f, c, s in zip(feats, encoder.out_channels, (4, 8, 16, 32)):
        assert f.shape == (1, c, 128 // s, 128 // s)  # NCHW even for Swin (timm gives NHWC)
        assert torch.isfinite(f).all()
    sum(f.square().mean() for f in feats).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_swin_output_is_converted_from_nhwc():
    encoder = REGISTRY.build("colormap_encoder", {"name": "swin_tiny"})
    assert encoder.nhwc  # timm's Swin returns NHWC; the encoder permutes it
    raw = encoder.backbone(torch.rand(1, 3, 128, 128))
    assert raw[0].shape[-1] == encoder.out_channels[0]


def test_mobilenetv2_drops_the_stride_2_level():
    encoder = REGISTRY.build("colormap_encoder", {"name": "mobilenetv2"})
    assert list(encoder.backbone.feature_info.reduction()) == [4, 8, 16, 32]


def test_backbone_without_stride_4_is_a_config_error():
    with pytest.raises(ConfigError, match="strides"):
        REGISTRY.build("colormap_encoder", {"name": "timm", "backbone": "vit_tiny_patch16_224"})


def test_unknown_timm_backbone_is_a_config_error():
    with pytest.raises(ConfigError, match="not_a_model"):
        REGISTRY.build("colormap_encoder", {"name": "timm", "backbone": "not_a_model"})


@pytest.mark.parametrize("options", [{}, {"pooling": "conv"}, {"pooling": "cls"}, {"attention_blocks": 2},
                                     {"pooling": "cls", "attention_blocks": 1}])
def test_binary_mask_pool_is_order_invariant_and_empty_safe(options):
    encoder = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", **options}).eval()
    masks = _input(encoder, n=3)
    a = encoder(masks)
    b = encoder(masks[:, [2, 0, 1]])
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    # each entity's vector is painted only over its own mask: far from every mask the features are 0
    assert a[0][0, :, 31, 127 // 4].abs().max() == 0
    padded = encoder(torch.cat([masks, torch.zeros(1, 2, 128, 128)], 1))  # a batch's padding entities change nothing
    for x, y in zip(a, padded):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    empty = encoder(torch.zeros(1, 0, 128, 128))
    assert [e.shape[1] for e in empty] == list(encoder.out_channels) and all((e == 0).all() for e in empty)


@pytest.mark.parametrize("value_range", ["0_1", "-1_1"])
def test_binary_mask_pool_padding_stays_out_of_training_batchnorm(value_range):
    """In training a batch pads its samples' masks with empty ones; they are no entities, so neither the
    output nor BatchNorm's running statistics may depend on them (nor on running them through the backbone)."""
    torch.manual_seed(0)
    plain = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "value_range": value_range}).train()
    padded = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "value_range": value_range}).train()
    padded.load_state_dict(plain.state_dict())
    masks = _input(plain, n=3)
    calls = []
    padded.backbone.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    a = plain(masks)
    b = padded(torch.cat([masks, torch.zeros(1, 2, 128, 128)], 1))
    assert calls == [3]  # the two padded masks never reach the backbone
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
    for (name, x), y in zip(plain.state_dict().items(), padded.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)


@pytest.mark.parametrize("blocks", [0, 1])
def test_binary_mask_pool_attention_blocks_let_entities_see_each_other(blocks):
    encoder = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "attention_blocks": blocks}).eval()
    masks = _input(encoder, n=3)
    moved = masks.clone()
    moved[0, 2, 70:, :] = 1  # another entity grows (away from the first)
    first = masks[0, 0] > 0
    a, b = encoder(masks)[0][0][:, first[::4, ::4]], encoder(moved)[0][0][:, first[::4, ::4]]
    assert torch.allclose(a, b, atol=1e-6) == (blocks == 0)  # without attention each entity is encoded alone


def test_binary_mask_pool_conv_pooling_starts_as_the_average():
    avg = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool"}).eval()
    conv = REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "pooling": "conv"}).eval()
    conv.backbone.load_state_dict(avg.backbone.state_dict())
    masks = torch.zeros(1, 1, 224, 224)
    masks[0, 0, 56:168, 28:196] = 1  # whole cells of the 14 × 14 grid at every level
    for x, y in zip(avg(masks), conv(masks)):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_binary_mask_pool_rejects_unknown_value_range():
    with pytest.raises(ConfigError, match="value_range"):
        REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "value_range": "0_2"})
    with pytest.raises(ConfigError, match="pooling.*avg, conv, cls"):
        REGISTRY.build("colormap_encoder", {"name": "binary_mask_pool", "pooling": "max"})


def test_backbone_checkpoint_round_trip_and_key_errors(tmp_path):
    from safetensors.torch import save_file

    src = REGISTRY.build("colormap_encoder", {"name": "mobilenetv2"}).eval()
    state = {k: v.contiguous() for k, v in src.backbone.state_dict().items()}
    save_file(state, tmp_path / "mnv2.safetensors")
    torch.save(state, tmp_path / "mnv2.pt")
    x = torch.rand(1, 3, 64, 64)
    for f in ("mnv2.safetensors", "mnv2.pt"):
        dst = REGISTRY.build("colormap_encoder", {"name": "mobilenetv2", "checkpoint": str(tmp_path / f)}).eval()
        for a, b in zip(src(x), dst(x)):
            torch.testing.assert_close(a, b)
    missing = dict(state)
    gone = sorted(missing)[0]
    del missing[gone]
    missing["extra.weight"] = torch.zeros(1)
    save_file(missing, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError) as err:
        REGISTRY.build("colormap_encoder", {"name": "mobilenetv2", "checkpoint": str(tmp_path / "bad.safetensors")})
    assert gone in str(err.value) and "extra.weight" in str(err.value)


@pytest.mark.parametrize("name, params_m", [("swin_tiny", 27.5), ("swin_large", 195.0)])
def test_swin_presets_at_full_size_on_meta(name, params_m):
    with torch.device("meta"):
        enc = REGISTRY.build("colormap_encoder", {"name": name, "tiny": False, "img_size": 224})
        feats = enc(torch.zeros(1, 3, 224, 224))
    assert abs(sum(p.numel() for p in enc.parameters()) / 1e6 / params_m - 1) < 0.05
    assert [f.shape[1] for f in feats] == list(enc.out_channels) and feats[0].shape[-1] == 56


@pytest.mark.parametrize("name, options", [
    ("mobilenetv2", {}),
    ("swin_tiny", {"img_size": 64}),  # the tiny Swin geometry (tiny=true)
])
def test_a_published_timm_classifier_checkpoint_loads(tmp_path, name, options):
    """ImageNet weights as timm publishes them (the whole classifier, head included) load into the
    encoder's feature levels: its features are the classifier's own intermediate maps."""
    import timm
    from safetensors.torch import save_file

    encoder = REGISTRY.build("colormap_encoder", {"name": name, **options})
    kwargs = {"img_size": 64, **_TINY_SWIN} if name == "swin_tiny" else {}
    torch.manual_seed(1)
    classifier = timm.create_model(encoder.config.backbone, pretrained=False, **kwargs).eval()
    state = {k: v.contiguous() for k, v in classifier.state_dict().items()}
    assert any(k.startswith(("classifier.", "head.")) for k in state)  # the published layout: head included
    torch.save(state, tmp_path / "published.pth")
    save_file(state, tmp_path / "published.safetensors")
    published = {(tuple(v.shape), v.float().sum().item(), v.float().abs().sum().item()) for v in state.values()}
    x = torch.rand(1, 3, 64, 64)
    for file in ("published.pth", "published.safetensors"):
        loaded = REGISTRY.build("colormap_encoder", {"name": name, **options, "checkpoint": str(tmp_path / file)}).eval()
        random = REGISTRY.build("colormap_encoder", {"name": name, **options}).eval()
        for key, value in loaded.backbone.named_parameters():  # every parameter came from the file
            assert (tuple(value.shape), value.float().sum().item(), value.float().abs().sum().item()) in published, key
        assert not all(torch.equal(a, b) for a, b in zip(loaded(x), random(x)))

    shared = sorted(set(loaded.backbone.state_dict()) & set(state))
    truncated = {k: v for k, v in state.items() if k != shared[0]}
    save_file(truncated, tmp_path / "truncated.safetensors")
    with pytest.raises(CheckpointError, match="nor is it a published timm checkpoint"):
        REGISTRY.build("colormap_encoder", {"name": name, **options, "checkpoint": str(tmp_path / "truncated.safetensors")})
