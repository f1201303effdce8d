"""CMPC: each module's shapes and invariants, every ablation switch, and a referral at the image's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.components.referrers.cmpc import (CMPCReferrer, FeatureExchange, RelationReasoning, WordClassifier,
                                              spatial_map)
from esgkit.components.text_encoders.lstm import LSTMTextEncoder
from esgkit.core import TextFeatures
from esgkit.core.errors import ConfigError
from esgkit.layers.fusion import MutanFusion
from esgkit.layers.recurrent import ConvLSTM

TINY = dict(backbone="mobilenetv2_050", backbone_options={}, image_size=64, dim=16, classifier_dim=8, mutan_heads=2,
            lstm_dim=8)


def text(b: int = 2, t: int = 5, d: int = 12) -> TextFeatures:
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    tokens = torch.randn(b, t, d)
    return TextFeatures(tokens, mask, tokens.mean(1))


def referrer(**options) -> CMPCReferrer:
    torch.manual_seed(0)
    r = CMPCReferrer(CMPCReferrer.Config(**{**TINY, **options}))
    r.configure(12)
    return r.eval()


def test_spatial_map_is_the_cell_geometry():
    m = spatial_map(4, 8)
    assert m.shape == (8, 4, 8)
    assert m[0, 0, 0] == -1 and m[2, 0, -1] == pytest.approx(1) and m[1, 0, 0] == -1 and m[3, -1, 0] == pytest.approx(1)
    assert torch.allclose(m[4], (m[0] + m[2]) / 2) and torch.allclose(m[5], (m[1] + m[3]) / 2)
    assert torch.allclose(m[6], torch.full((4, 8), 1 / 8)) and torch.allclose(m[7], torch.full((4, 8), 1 / 4))


def test_word_classifier_gives_probabilities_on_real_words_only():
    t = text()
    p = WordClassifier(12, 8)(t.tokens, t.mask)
    assert p.shape == (2, 5, 4) and (p >= 0).all()
    assert torch.allclose(p.sum(-1), t.mask.float(), atol=1e-6)


def test_relation_adjacency_is_stochastic_and_ignores_padding_words():
    torch.manual_seed(0)
    module = RelationReasoning(12)
    t = text()
    nodes = torch.randn(2, 6, 12)
    adj = module.adjacency(nodes, t.tokens, t.mask)
    assert adj.shape == (2, 6, 6) and torch.allclose(adj.sum(-1), torch.ones(2, 6), atol=1e-5)
    words = t.tokens.clone()
    words[0, 3:] = 100.0  # padding of the first expression
    assert torch.allclose(module.adjacency(nodes, words, t.mask)[0], adj[0], atol=1e-6)
    x = torch.randn(2, 12, 2, 3)
    out = module(x, t.tokens, t.mask)
    nodes_x = x.flatten(2).transpose(1, 2)  # the factored forward equals adj·X·W with the full adjacency
    full = nodes_x + module.norm(module.adjacency(nodes_x, t.tokens, t.mask) @ module.graph(nodes_x)).relu()
    assert torch.allclose(out, full.transpose(1, 2).reshape(x.shape), atol=1e-5)


def test_feature_exchange_mixes_levels():
    torch.manual_seed(0)
    feats = [torch.randn(2, 12, 4, 4, requires_grad=True) for _ in range(3)]
    out = FeatureExchange(12, 3, rounds=2)(feats, torch.randn(2, 12))
    assert [f.shape for f in out] == [f.shape for f in feats]
    out[0].sum().backward()
    assert feats[1].grad is not None and feats[1].grad.abs().sum() > 0  # level 0 received level 1's features


def test_mutan_and_convlstm_shapes():
    assert MutanFusion(10, 6, 8, heads=3)(torch.randn(2, 10, 4, 5), torch.randn(2, 6)).shape == (2, 8, 4, 5)
    assert ConvLSTM(8, 4)([torch.randn(2, 8, 4, 5) for _ in range(3)]).shape == (2, 4, 4, 5)
    with pytest.raises(ValueError):
        ConvLSTM(8, 4)([])


@pytest.mark.parametrize("switch", [{}, {"word_classifier": False}, {"entity_perception": False},
                                    {"relation_reasoning": False}, {"tgfe": False}, {"tgfe_rounds": 3}])
def test_every_ablation_runs_and_changes_the_network(switch):
    r = referrer(**switch)
    images, t = torch.randn(2, 3, 64, 64), text()
    out = r(images, t)
    grid = 64 // 8
    assert out["final"].shape == (2, grid, grid) and len(out["levels"]) == 3
    assert all(level.shape == (2, grid, grid) for level in out["levels"])
    assert out["word_types"].shape == (2, 5, 4)
    names = {n.split(".")[0] for n, _ in r.named_parameters()}
    assert ("reason" in names) == switch.get("relation_reasoning", True)
    assert ("exchange" in names) == switch.get("tgfe", True)
    assert ("classifier" in names) == switch.get("word_classifier", True)
    if "tgfe_rounds" in switch:
        assert len(r.exchange.gates) == 3


def test_refer_gives_a_mask_at_the_image_size_and_its_box():
    r = referrer(threshold=0.01)  # an untrained network's probabilities are near 0.5: most pixels pass
    image = np.random.default_rng(0).integers(0, 255, (40, 72, 3), dtype=np.uint8)
    t = text()
    referrals = r.refer(image, t)
    assert len(referrals) == 2
    for ref in referrals:
        assert ref.mask.shape == (40, 72) and ref.mask.dtype == bool and ref.mask.any()
        rows, cols = np.flatnonzero(ref.mask.any(1)), np.flatnonzero(ref.mask.any(0))
        assert ref.box == (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        assert 0 < ref.score <= 1 and ref.box_entity is None
    # the image is encoded once for both expressions: the same as referring to each alone
    (alone,) = r.refer(image, TextFeatures(t.tokens[1:], t.mask[1:], t.sentence[1:]))
    assert np.array_equal(alone.mask, referrals[1].mask) and alone.score == pytest.approx(referrals[1].score, abs=1e-5)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="out_stride"):
        CMPCReferrer(CMPCReferrer.Config(**{**TINY, "image_size": 60}))
    with pytest.raises(ConfigError, match="tgfe_rounds"):
        CMPCReferrer(CMPCReferrer.Config(**{**TINY, "tgfe_rounds": 0}))
    with pytest.raises(ConfigError, match="threshold"):
        CMPCReferrer(CMPCReferrer.Config(**{**TINY, "threshold": 1.5}))
    with pytest.raises(ConfigError, match="levels"):
        CMPCReferrer(CMPCReferrer.Config(**{**TINY, "levels": [2, 9]}))


def test_lstm_text_encoder_sentence_is_the_last_real_words_state():
    torch.manual_seed(0)
    encoder = LSTMTextEncoder(LSTMTextEncoder.Config(dim=8, embed_dim=6)).eval()
    f = encoder.encode(["the red circle", "the circle left of the blue square"])
    assert f.tokens.shape == (2, 7, 8) and f.mask.sum(1).tolist() == [3, 7]
    assert torch.allclose(f.sentence[0], f.tokens[0, 2], atol=1e-6)
    assert torch.allclose(f.sentence[1], f.tokens[1, 6], atol=1e-6)
    assert (f.tokens[0, 3:] == 0).all()
