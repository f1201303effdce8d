"""The Table XX mask decoders whose queries are the input entities (``roi_align``, ``mask_attention``):
shapes, padding, the mask in the cross-attention (add vs multiply, an empty mask), RoI-Align reading
the entity's box, their config errors, and the GELLA pipeline's identity query → entity mapping."""

import warnings

import numpy as np
import pytest
import torch

from esgkit.core import ConfigError, EntityMasks, MaskDecoderOutput, build_pipeline, get_registry
from esgkit.components.decoders.entity_queries import mask_boxes

REGISTRY = get_registry()
VISION_DIM, GRID, SIDE = 16, (4, 4), 64
DECODERS = [("roi_align", {}), ("mask_attention", {"mask_in_attention": "add"}),
            ("mask_attention", {"mask_in_attention": "multiply"})]
IDS = ["roi_align", "mask_attention-add", "mask_attention-multiply"]


def _decoder(name, seed=0, **options):
    torch.manual_seed(seed)
    dec = REGISTRY.build("mask_decoder", {"name": name, **options})
    dec.configure_vision(VISION_DIM)
    return dec.eval()


def _masks():
    """Image 0: three entities; image 1: one entity and two padding (all-zero) masks."""
    m = torch.zeros(2, 3, SIDE, SIDE)
    m[0, 0, :20, :30] = 1.0
    m[0, 1, 30:, 10:40] = 1.0
    m[0, 2, 40:50, 45:60] = 1.0
    m[1, 0, 8:40, 20:60] = 1.0
    return m


def _z_v(b=2, seed=1):
    torch.manual_seed(seed)
    return torch.randn(b, GRID[0] * GRID[1], VISION_DIM)


@pytest.mark.parametrize("name, options", DECODERS, ids=IDS)
def test_one_query_per_entity_with_shapes_and_gradients(name, options):
    dec = _decoder(name, **options).train()
    assert type(dec).queries_are_entities and type(dec).input_kind == "masks"
    out = dec(_z_v(), GRID, _masks())
    d = dec.embed_dim
    assert isinstance(out, MaskDecoderOutput) and out.region_features is None
    assert out.embeddings.shape == (2, 3, d) and out.entityness.shape == (2, 3, 2)
    assert out.masks.shape == (2, 3, SIDE // 4, SIDE // 4)
    assert len(out.aux) == (dec.config.layers if name == "mask_attention" else 0)  # initial + intermediate
    loss = out.masks.sigmoid().mean() + out.entityness.square().mean() + out.embeddings.square().mean()
    loss = loss + sum(a["masks"].sigmoid().mean() + a["entityness"].square().mean() for a in out.aux)
    loss.backward()
    no_grad = [n for n, p in dec.named_parameters() if p.grad is None]
    assert not no_grad, f"no gradient reaches {no_grad}"
    empty = dec(_z_v(), GRID, torch.zeros(2, 0, SIDE, SIDE))  # no entity at all: no query
    assert empty.embeddings.shape == (2, 0, d) and empty.masks.shape == (2, 0, SIDE // 4, SIDE // 4)


@pytest.mark.parametrize("name, options", DECODERS, ids=IDS)
def test_padding_leaves_the_real_entities_alone(name, options):
    """An image's entities give the same outputs alone, or padded with empty masks in a batch."""
    dec = _decoder(name, **options)
    z_v, masks = _z_v(), _masks()
    with torch.no_grad():
        batch = dec(z_v, GRID, masks)
        alone = dec(z_v[1:], GRID, masks[1:, :1])
        padded_more = dec(z_v[:1], GRID, torch.cat([masks[:1], torch.zeros(1, 2, SIDE, SIDE)], dim=1))
    for key in ("embeddings", "entityness", "masks"):
        torch.testing.assert_close(getattr(batch, key)[1, :1], getattr(alone, key)[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(getattr(padded_more, key)[0, :3], getattr(batch, key)[0], rtol=1e-5, atol=1e-5)
    assert all(bool(torch.isfinite(getattr(batch, key)).all()) for key in ("embeddings", "entityness", "masks"))


def test_add_and_multiply_put_the_mask_in_differently():
    add = _decoder("mask_attention", mask_in_attention="add")
    mul = _decoder("mask_attention", mask_in_attention="multiply")
    missing, unexpected = add.load_state_dict(mul.state_dict(), strict=False)  # the same weights ...
    assert not unexpected and all(k.endswith("mask_weight") for k in missing) and missing
    with torch.no_grad():
        a, m = add(_z_v(), GRID, _masks()), mul(_z_v(), GRID, _masks())
    torch.testing.assert_close(a.aux[0]["embeddings"], m.aux[0]["embeddings"])  # ... the same initial state
    assert not torch.allclose(a.embeddings, m.embeddings, atol=1e-3)            # ... then the mask differs


def test_multiply_attends_only_inside_the_mask():
    """multiply = the softmax weights × m, renormalised: a mask inside one patch reads that patch alone."""
    dec = _decoder("mask_attention", mask_in_attention="multiply")
    block = dec.blocks[0]
    tokens, state = torch.randn(1, 16, dec.embed_dim), torch.randn(1, 1, dec.embed_dim)
    cover = torch.zeros(1, 1, 16)
    cover[0, 0, 5] = 0.3                                            # a third of patch 5
    with torch.no_grad():
        got = block.cross(state, tokens, block.mask_bias(cover))
        want = block.cross.out(block.cross.v(tokens[:, 5]))
    torch.testing.assert_close(got[0, 0], want[0], rtol=1e-5, atol=1e-5)


def test_multiply_with_an_empty_mask_stays_finite():
    dec = _decoder("mask_attention", mask_in_attention="multiply").train()
    masks = _masks()
    masks[0, 1] = 0.0                                              # a real entity too small to show
    z_v = _z_v().requires_grad_(True)
    out = dec(z_v, GRID, masks)
    only_empty = dec(z_v[:1], GRID, torch.zeros(1, 2, SIDE, SIDE))  # an image of empty masks only
    for o in (out, only_empty):
        assert all(bool(torch.isfinite(t).all()) for t in (o.embeddings, o.entityness, o.masks))
    (out.embeddings.sum() + out.masks.sum() + only_empty.embeddings.sum()).backward()
    assert bool(torch.isfinite(z_v.grad).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in dec.parameters() if p.grad is not None)


def test_roi_align_reads_the_features_inside_the_box():
    dec = _decoder("roi_align")
    masks = torch.zeros(1, 2, SIDE, SIDE)
    masks[0, 0, 2:30, 4:28] = 1.0                       # inside patches (0..1, 0..1) of the 4 × 4 grid
    masks[0, 1, 40:60, 40:60] = 1.0
    z_v = _z_v(b=1)
    moved = z_v.clone().view(1, 4, 4, -1)
    moved[:, 3], moved[:, :, 3] = 5.0, -5.0              # change the patches far from entity 0's box
    with torch.no_grad():
        a, b = dec(z_v, GRID, masks), dec(moved.view(1, 16, -1), GRID, masks)
    torch.testing.assert_close(a.embeddings[0, 0], b.embeddings[0, 0])
    assert not torch.allclose(a.embeddings[0, 1], b.embeddings[0, 1])


def test_mask_boxes():
    masks = torch.zeros(1, 3, 8, 10)
    masks[0, 0, 2:5, 3:7] = 1.0
    masks[0, 1, 7, 9] = 1.0
    got = mask_boxes(masks)[0].tolist()
    assert got == [[3, 2, 7, 5], [9, 7, 10, 8], [0, 0, 10, 8]]  # x0, y0, x1, y1; empty → the whole square
    assert mask_boxes(torch.zeros(2, 0, 8, 8)).shape == (2, 0, 4)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="mask_decoder.mask_in_attention: got 'both'"):
        REGISTRY.build("mask_decoder", {"name": "mask_attention", "mask_in_attention": "both"})
    with pytest.raises(ConfigError, match="mask_decoder.heads"):
        REGISTRY.build("mask_decoder", {"name": "mask_attention", "hidden_dim": 30, "heads": 4})
    with pytest.raises(ConfigError, match="mask_decoder.layers"):
        REGISTRY.build("mask_decoder", {"name": "mask_attention", "layers": 0})
    with pytest.raises(ConfigError, match="mask_decoder.output_size"):
        REGISTRY.build("mask_decoder", {"name": "roi_align", "output_size": 0})
    with pytest.raises(ConfigError, match="num_queries"):  # the mask2former keys are not these decoders'
        REGISTRY.build("mask_decoder", {"name": "roi_align", "num_queries": 8})


# --------------------------------------------------------------------------- in the GELLA pipeline
@pytest.fixture(scope="module")
def pipeline():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained weights
        return build_pipeline("gella_tiny", ["mask_decoder.name=roi_align"])


def test_pipeline_feeds_the_masks_and_maps_query_i_to_entity_i(pipeline):
    ids = np.zeros((96, 160), np.int64)
    ids[:40], ids[55:80, 70:95], ids[55:80, 115:140] = 7, 11, 12
    ids[90, 2] = 3                                       # one pixel: gone at mask_size 128 (nearest sampling)
    masks = EntityMasks.from_id_map(ids)
    image = np.full((96, 160, 3), 40, np.uint8)
    assert pipeline.queries_are_entities and pipeline.mask_input_kind == "masks"
    mask_in = pipeline.mask_input(masks, image)
    assert mask_in.shape == (4, 128, 128) and mask_in.dtype == torch.float32
    with torch.no_grad():
        _, out = pipeline.visual_forward(pipeline.vision_encoder.preprocess(image)[None], mask_in[None])
    assert out.embeddings.shape[1] == len(masks) and out.masks.shape[-2:] == (32, 32)
    small = int(np.nonzero(masks.ids == 3)[0][0])
    want = [-1 if k == small else k for k in range(len(masks))]
    assert pipeline.match_queries(out.masks[0], masks).tolist() == want
    padded = torch.cat([out.masks[0], torch.zeros(2, 32, 32)])     # queries of padding: no entity
    assert pipeline.match_queries(padded, masks).tolist() == [*want, -1, -1]
    assert pipeline.match_queries(out.masks[0, :0], EntityMasks.empty(96, 160)).tolist() == []
    g = pipeline.run(image, masks=EntityMasks.empty(96, 160), caption="a red circle")  # no entity, no query
    assert all(not x.entity_ids for x in g.groundings)


def test_shipped_recipe_swaps_the_decoder_in_one_word():
    """gella_tiny_trained feeds the colormap encoder the image too (colormap_image); with these decoders
    no colormap encoder runs, so the recipe builds as it is (its shipped weights are the mask2former's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = build_pipeline("gella_tiny_trained", ["mask_decoder.name=mask_attention", "pipeline.checkpoint=''"])
    assert type(p.mask_decoder).__name__ == "MaskAttentionMaskDecoder" and p.config.colormap_image
    assert p.mask_decoder.vision_dim == p.vision_encoder.embed_dim
    p.check()
