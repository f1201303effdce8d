"""QRNet / UniQRNet: QD-ATT starts neutral and learns to depend on the sentence, every stage's shapes,
each switch (box only, mask only, no QD-ATT, fixed or learned balance), a referral at the image's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esgkit.components.referrers.qrnet import QRNetReferrer
from esgkit.core import EntityMasks, TextFeatures
from esgkit.core.errors import ConfigError, InputError
from esgkit.layers.backbones import StagedBackbone
from esgkit.layers.geometry import mask_boxes
from esgkit.layers.query_attention import DynamicLinear, QueryDynamicAttention

SWIN = dict(img_size=64, window_size=4, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
TINY = dict(backbone="swin_tiny_patch4_window7_224", backbone_options=SWIN, image_size=64, dim=16, layers=1, heads=2,
            ffn_dim=32, max_text_tokens=6, qd_rank=4, qd_reduction=4, dropout=0.0)


def text(b: int = 2, t: int = 5, d: int = 12, seed: int = 0) -> TextFeatures:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, 3:] = False
    tokens = torch.randn(b, t, d, generator=g)
    return TextFeatures(tokens, mask, tokens.mean(1))


def referrer(**options) -> QRNetReferrer:
    torch.manual_seed(0)
    r = QRNetReferrer(QRNetReferrer.Config(**{**TINY, **options}))
    r.configure(12)
    return r.eval()


def test_qd_att_gates_start_at_one_half_then_depend_on_the_sentence():
    torch.manual_seed(0)
    att = QueryDynamicAttention(8, 6, reduction=2, rank=3)
    x, mu = torch.randn(2, 8, 5, 5), torch.randn(2, 6)
    assert torch.equal(att.channel_gate(x, mu), torch.full((2, 8), 0.5))
    assert torch.equal(att.spatial_gate(x, mu), torch.full((2, 1, 5, 5), 0.5))
    assert torch.allclose(att(x, mu), x * 0.25)
    layer = DynamicLinear(4, 3, 6, rank=2)
    assert torch.equal(layer(torch.randn(2, 7, 4), mu), torch.zeros(2, 7, 3))  # V = 0: no weights yet
    optimiser = torch.optim.SGD(att.parameters(), lr=1.0)
    (att(x, mu) - x).pow(2).mean().backward()  # pull the gates towards 1
    optimiser.step()
    gates = att.channel_gate(x, mu)
    assert (gates > 0.5).all()
    assert not torch.allclose(gates[0], gates[1])  # two sentences, two gates


def test_dynamic_linear_is_a_per_sample_linear_map():
    torch.manual_seed(0)
    layer = DynamicLinear(4, 3, 6, rank=2)
    torch.nn.init.normal_(layer.factor)
    x, mu = torch.randn(2, 5, 4), torch.randn(2, 6)
    params = layer.decoder(mu).view(2, 5, 2) @ layer.factor
    for b in range(2):
        assert torch.allclose(layer(x, mu)[b], x[b] @ params[b, :4] + params[b, 4], atol=1e-5)


def test_staged_backbone_acts_between_the_stages():
    torch.manual_seed(0)
    backbone = StagedBackbone("swin_tiny_patch4_window7_224", SWIN)
    x = torch.randn(1, 3, 64, 64)
    plain = backbone(x)
    assert [tuple(f.shape) for f in plain] == [(1, 8, 16, 16), (1, 16, 8, 8), (1, 32, 4, 4), (1, 64, 2, 2)]
    assert backbone.reductions == [4, 8, 16, 32] and backbone.channels == [8, 16, 32, 64]
    zeroed = backbone(x, lambda k, f: f * 0 if k == 1 else f)
    assert torch.equal(zeroed[0], plain[0]) and zeroed[1].abs().max() == 0 and not torch.allclose(zeroed[2], plain[2])
    with pytest.raises(ConfigError, match="stem \\+ stages"):
        StagedBackbone("resnet18")


def test_every_stage_has_its_shape():
    r = referrer()
    t = text()
    stages, top_down, tokens = r.visual(torch.randn(2, 3, 64, 64), r.mu(t))
    assert [tuple(f.shape[1:]) for f in stages] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2)]
    assert [tuple(f.shape[1:]) for f in top_down] == [(16, 16, 16), (16, 8, 8), (16, 4, 4), (16, 2, 2)]
    assert [tuple(f.shape[1:]) for f in tokens] == [(16, 2, 2), (16, 1, 1)]  # strides 32 and 64
    out = r.fuse(stages, top_down, tokens, t)
    assert out["box"].shape == (2, 4) and ((out["box"] > 0) & (out["box"] < 1)).all()
    assert out["mask"].shape == (2, 8, 8)  # mask_stride 8 of 64²
    assert [tuple(s.shape) for s in out["stages"]] == [(2, 16, 16), (2, 8, 8), (2, 4, 4), (2, 2, 2)]
    assert not r.needs_proposals and r.log_vars is not None and r.log_vars.tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match="max_text_tokens"):
        r(torch.randn(1, 3, 64, 64), text(1, 9))


@pytest.mark.parametrize("token_strides, grids, mask_stride", [([16, 32], [4, 2], 8), ([8, 16], [8, 4], 8),
                                                              ([32, 64], [2, 1], 32)])
def test_the_fusion_encoder_reads_the_chosen_neck_levels(token_strides, grids, mask_stride):
    r = referrer(token_strides=token_strides, mask_stride=mask_stride)
    t = text()
    stages, top_down, tokens = r.visual(torch.randn(2, 3, 64, 64), r.mu(t))
    assert [tuple(f.shape[1:]) for f in tokens] == [(16, g, g) for g in grids]
    assert r.valid_tokens([(64, 64)]).shape == (1, sum(g * g for g in grids))
    out = r.fuse(stages, top_down, tokens, t)
    assert out["box"].shape == (2, 4) and out["mask"].shape == (2, 64 // mask_stride, 64 // mask_stride)


def test_qd_att_makes_the_features_depend_on_the_expression():
    r = referrer()
    for gate in [*r.stage_gates, *r.neck_gates]:
        for layer in gate.modules():
            if isinstance(layer, DynamicLinear):
                torch.nn.init.normal_(layer.factor, std=0.5)
    x = torch.randn(1, 3, 64, 64).expand(2, -1, -1, -1)
    stages, _, _ = r.visual(x, r.mu(text()))
    assert not torch.allclose(stages[0][0], stages[0][1])  # one image, two expressions
    plain = referrer(qd_att=False)
    assert plain.stage_gates is None and plain.mu(text()) is None
    stages, _, _ = plain.visual(x, None)
    assert torch.allclose(stages[0][0], stages[0][1])


def test_referral_is_at_the_image_size():
    r = referrer(threshold=0.01)
    image = np.random.default_rng(0).integers(0, 255, (40, 64, 3), dtype=np.uint8)
    refs = r.refer(image, text())
    assert len(refs) == 2 and all(ref.mask.shape == (40, 64) and ref.mask.any() for ref in refs)
    for ref in refs:
        x, y, w, h = ref.box
        assert 0 <= x and 0 <= y and x + w <= 64 + 1e-6 and y + h <= 40 + 1e-6 and ref.box_entity is None


def test_box_only_qrnet_takes_the_best_overlapping_proposal():
    r = referrer(mask_head=False, intermediate_supervision=False)
    assert r.needs_proposals and r.log_vars is None and not hasattr(r, "mask_decoder")
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="entity proposals"):
        r.refer(image, text())
    masks = np.zeros((3, 64, 64), bool)
    masks[0, :20, :20] = masks[1, 10:50, 10:60] = masks[2, 40:, :] = True
    proposals = EntityMasks(masks, ids=np.array([7, 8, 9]))
    for ref in r.refer(image, text(), proposals):
        x0, y0, w, h = ref.box
        boxes = mask_boxes(masks)
        inter = [max(0, min(x0 + w, bx + bw) - max(x0, bx)) * max(0, min(y0 + h, by + bh) - max(y0, by))
                 for bx, by, bw, bh in boxes]
        iou = [i / (w * h + bw * bh - i) for i, (_, _, bw, bh) in zip(inter, boxes)]
        best = int(np.argmax(iou))
        assert ref.mask_entity == 7 + best and np.array_equal(ref.mask, masks[best])
        assert ref.score == pytest.approx(iou[best])


@pytest.mark.parametrize("options", [dict(box_head=False), dict(box_source="mask")], ids=["mask-only", "box-source"])
def test_the_mask_boxes_itself_without_box_head_or_when_asked(options):
    r = referrer(threshold=0.01, **options)
    assert (r.box is None and r.log_vars is None) if not r.config.box_head else r.box is not None
    ref = r.refer(np.zeros((64, 64, 3), np.uint8), text(1))[0]
    assert ref.mask.any() and ref.box == tuple(float(v) for v in mask_boxes(ref.mask[None])[0])


def test_balance_strategies():
    r = referrer()
    losses = {"box": torch.tensor(2.0), "mask": torch.tensor(3.0)}
    with torch.no_grad():
        r.log_vars.copy_(torch.tensor([0.5, -1.0]))
    out = r.balance(losses, {"box": 9.0, "mask": 9.0})
    assert out["box"].item() == pytest.approx(2 * np.exp(-0.5) + 0.5)
    assert out["mask"].item() == pytest.approx(3 * np.e - 1)
    fixed = referrer(loss_balance="fixed")
    assert fixed.log_vars is None
    out = fixed.balance(losses, {"box": 0.5, "mask": 2.0})
    assert out["box"].item() == 1.0 and out["mask"].item() == 6.0
    assert fixed.balance({"box": torch.tensor(2.0)}, {"box": 0.5, "mask": 2.0})["box"].item() == 2.0


@pytest.mark.parametrize("options, match", [
    (dict(box_head=False, mask_head=False), "nothing would be predicted"),
    (dict(loss_balance="gradnorm"), "loss_balance"),
    (dict(mask_stride=12), "mask_stride"),
    (dict(token_strides=[16, 32], mask_stride=32), "mask_stride"),
    (dict(token_strides=[16, 64]), "token_strides"),
    (dict(token_strides=[64, 128], image_size=128), "token_strides"),
    (dict(image_size=96), "multiple of 64"),
    (dict(box_source="mask", mask_head=False), "box_source"),
    (dict(backbone="resnet18", backbone_options={}), "stem \\+ stages"),
])
def test_bad_configs_are_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        QRNetReferrer(QRNetReferrer.Config(**{**TINY, **options}))
