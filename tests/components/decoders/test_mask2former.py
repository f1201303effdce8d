"""The Mask2Former mask decoder on a fused pyramid: output shapes, deep-supervision outputs,
gradients to every weight, and its geometry checks."""

import pytest
import torch

from esgkit.core import CompatibilityError, ConfigError, MaskDecoderOutput, get_registry

REGISTRY = get_registry()
CHANNELS = (8, 16, 32, 112)


def _pyramid(b=2, size=64):
    return [torch.randn(b, c, size // s, size // s) for c, s in zip(CHANNELS, (4, 8, 16, 32))]


def _decoder(**options):
    dec = REGISTRY.build("mask_decoder", {"name": "mask2former", **options})
    dec.configure(CHANNELS)
    return dec


def test_outputs_and_gradients():
    dec = _decoder()
    q, d = dec.config.num_queries, dec.embed_dim
    out = dec(_pyramid())
    assert isinstance(out, MaskDecoderOutput)
    assert out.embeddings.shape == (2, q, d) and d == 32
    assert out.entityness.shape == (2, q, 2)
    assert out.masks.shape == (2, q, 16, 16)  # stride 4 of the 64² input
    assert len(out.aux) == dec.config.decoder_layers - 1
    for a in out.aux:
        assert a["masks"].shape == out.masks.shape and a["entityness"].shape == out.entityness.shape
    assert all(torch.isfinite(t).all() for t in (out.embeddings, out.entityness, out.masks))
    loss = out.masks.sigmoid().mean() + out.entityness.square().mean() + out.embeddings.square().mean()
    loss = loss + sum(a["masks"].sigmoid().mean() + a["entityness"].square().mean() for a in out.aux)
    loss.backward()
    no_grad = [n for n, p in dec.named_parameters() if p.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad}"


def test_pool_regions_adds_the_mean_region_feature_and_log_area():
    dec = _decoder(entity_pooling=True)
    out = dec(_pyramid(b=1))
    assert out.region_features.shape == (1, dec.embed_dim + CHANNELS[0], 16, 16)
    q = out.masks.shape[1]
    regions = torch.zeros(1, q, 16, 16)
    regions[0, 0, :2, :2] = 1.0                          # query 0: the top-left 2×2 cells
    regions[0, 1:, :, 3] = 1.0                           # the others: column 3
    feats = out.region_features[0]
    want0 = torch.cat([feats[:, :2, :2].mean((1, 2)), torch.log1p(torch.tensor([4.0]))])
    want1 = torch.cat([feats[:, :, 3].mean(1), torch.log1p(torch.tensor([16.0]))])
    got = dec.pool_regions(out, regions)
    torch.testing.assert_close(got[0, 0], out.embeddings[0, 0] + dec.pooled(want0))
    torch.testing.assert_close(got[0, 1], out.embeddings[0, 1] + dec.pooled(want1))
    got.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dec.pooled.parameters())


def test_silhouettes_join_the_pooled_features():
    dec = _decoder(entity_pooling=True, silhouette_size=4)
    out = dec(_pyramid(b=1))
    q = out.masks.shape[1]
    regions = torch.ones(1, q, 16, 16)
    shapes = torch.zeros(1, q, 16)
    shapes[0, 0, :4] = 1.0                                  # query 0: a bar along the top of its box
    added = dec.pool_regions(out, regions, shapes) - out.embeddings
    assert not torch.allclose(added[0, 0], added[0, 1])     # same region, different silhouette
    torch.testing.assert_close(added[0, 1], added[0, 2])
    with pytest.raises(CompatibilityError, match="silhouettes of shape"):
        dec.pool_regions(out, regions)


def test_without_entity_pooling_there_is_nothing_to_pool():
    dec = _decoder()
    out = dec(_pyramid(b=1))
    assert out.region_features is None
    with pytest.raises(CompatibilityError, match="entity_pooling"):
        dec.pool_regions(out, torch.ones(1, out.masks.shape[1], 16, 16))


def test_paper_preset_size():
    with torch.device("meta"):
        dec = _decoder(num_queries=100, hidden_dim=256, heads=8, dim_feedforward=2048, encoder_layers=6,
                       encoder_feedforward_dim=1024, decoder_layers=10)
    params = sum(p.numel() for p in dec.parameters())
    assert 0.85 * 21e6 <= params <= 1.15 * 21e6  # paper Table XI: Mask2Former-style decoder, 21M
    assert dec.pixel_decoder.level_embed.is_meta  # the legacy-allocated parameter follows the device


def test_hidden_dim_must_suit_group_norm():
    with pytest.raises(ConfigError, match="multiple of 32"):
        REGISTRY.build("mask_decoder", {"name": "mask2former", "hidden_dim": 48})


def test_needs_four_levels_and_fixed_channels():
    dec = REGISTRY.build("mask_decoder", {"name": "mask2former"})
    with pytest.raises(CompatibilityError, match="4 pyramid levels"):
        dec.configure((8, 16, 32))
    dec.configure(CHANNELS)
    with pytest.raises(CompatibilityError, match="built for pyramid channels"):
        dec.configure((8, 16, 32, 64))
