"""ResoBlend: every Table XVII switch combination keeps the pyramid's shapes, the switches really
remove their part, and gradients reach every weight; `none` passes the pyramid through."""

import pytest
import torch

from esgkit.core import CompatibilityError, ConfigError, get_registry

REGISTRY = get_registry()
CHANNELS = (8, 16, 32, 112)
SWITCHES = ("sa", "ca", "ff", "res", "conv", "mask_residual")


def _pyramid(b=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, size // s, size // s, generator=g) for c, s in zip(CHANNELS, (4, 8, 16, 32))]


def _fuser(**switches):
    fuser = REGISTRY.build("fuser", {"name": "resoblend", **switches})
    fuser.configure(64, CHANNELS)
    return fuser


@pytest.mark.parametrize("off", [None, *SWITCHES])
def test_shapes_and_gradients_for_each_switch(off):
    fuser = _fuser(**({off: not getattr(_fuser().config, off)} if off else {}))  # each switch away from its default
    z_v = torch.randn(2, 16, 64, requires_grad=True)
    pyramid = _pyramid()
    out = fuser(z_v, (4, 4), pyramid)
    assert [o.shape for o in out] == [p.shape for p in pyramid]
    sum(o.square().mean() for o in out).backward()
    assert z_v.grad is not None and z_v.grad.abs().sum() > 0
    no_grad = [n for n, p in fuser.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"no gradient reaches {no_grad}"


def test_switches_remove_their_modules():
    assert not hasattr(_fuser(sa=False), "self_attn")
    assert not hasattr(_fuser(ca=False).levels[0], "attn")
    assert not hasattr(_fuser(ff=False).levels[0], "ffn")
    assert _fuser(conv=False).levels[0].out.kernel_size == (1, 1)
    assert _fuser().levels[0].out.kernel_size == (3, 3)


def test_cross_attention_is_what_lets_image_features_see_the_masks():
    z_v = torch.randn(1, 16, 64)
    a, b = _pyramid(1, seed=1), _pyramid(1, seed=2)
    for ca in (True, False):
        torch.manual_seed(0)
        fuser = _fuser(ca=ca, mask_residual=True).eval()
        delta_a = [o - p for o, p in zip(fuser(z_v, (4, 4), a), a)]   # the image branch z_w
        delta_b = [o - p for o, p in zip(fuser(z_v, (4, 4), b), b)]
        same = all(torch.allclose(x, y, atol=1e-6) for x, y in zip(delta_a, delta_b))
        assert same is (not ca)


def test_residual_switch_changes_the_output():
    z_v, pyramid = torch.randn(1, 16, 64), _pyramid(1)
    torch.manual_seed(0)
    with_res = _fuser().eval()
    torch.manual_seed(0)
    without = _fuser(res=False).eval()
    without.load_state_dict(with_res.state_dict())
    assert not torch.allclose(with_res(z_v, (4, 4), pyramid)[0], without(z_v, (4, 4), pyramid)[0])


def test_by_default_the_decoder_gets_z_w_alone_as_eq_15_says():
    z_v, pyramid = torch.randn(1, 16, 64), _pyramid(1)
    torch.manual_seed(0)
    ours = _fuser(mask_residual=True).eval()  # the shipped gella_tiny's form
    paper = _fuser().eval()
    paper.load_state_dict(ours.state_dict())
    for o, p, z in zip(ours(z_v, (4, 4), pyramid), paper(z_v, (4, 4), pyramid), pyramid):
        torch.testing.assert_close(o, z + p)  # eq. 15 as written: out^s = z_w^s


def test_none_fuser_is_identity():
    fuser = REGISTRY.build("fuser", {"name": "none"})
    fuser.configure(64, CHANNELS)
    pyramid = _pyramid()
    assert all(o is p for o, p in zip(fuser(torch.randn(2, 16, 64), (4, 4), pyramid), pyramid))


def test_reconfiguring_with_other_dims_is_refused():
    fuser = _fuser()
    fuser.configure(64, CHANNELS)  # same dims: fine
    with pytest.raises(CompatibilityError, match="vision dim 64"):
        fuser.configure(128, CHANNELS)


def test_heads_must_divide_dim():
    with pytest.raises(ConfigError, match="heads"):
        REGISTRY.build("fuser", {"name": "resoblend", "dim": 30, "heads": 4})
