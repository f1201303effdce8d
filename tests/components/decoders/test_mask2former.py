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
