"""Association heads: v×q logits, the exact FC formula, gradients, size checks."""

import pytest
import torch

from esgkit.core import CompatibilityError, get_registry

REGISTRY = get_registry()


@pytest.mark.parametrize("name", ["fc", "mlp"])
def test_scores_shape_and_gradients(name):
    assoc = REGISTRY.build("associator", {"name": name})
    assoc.configure(48, 32)
    e_vl, e_vc = torch.randn(3, 48, requires_grad=True), torch.randn(8, 32, requires_grad=True)
    logits = assoc(e_vl, e_vc)
    assert logits.shape == (3, 8)
    assert assoc(torch.randn(2, 3, 48), torch.randn(2, 8, 32)).shape == (2, 3, 8)  # batched
    logits.sum().backward()
    assert e_vl.grad is not None and e_vc.grad is not None
    assert all(p.grad is not None for p in assoc.parameters())


def test_fc_is_the_papers_bilinear_form():
    assoc = REGISTRY.build("associator", {"name": "fc"})
    assoc.configure(48, 32)
    e_vl, e_vc = torch.randn(3, 48), torch.randn(8, 32)
    a = e_vl @ assoc.lang.weight.T + assoc.lang.bias
    b = e_vc @ assoc.entity.weight.T + assoc.entity.bias
    torch.testing.assert_close(assoc(e_vl, e_vc), a @ b.T)


def test_mlp_has_a_hidden_relu_layer():
    assoc = REGISTRY.build("associator", {"name": "mlp"})
    assoc.configure(48, 32)
    assert [type(m).__name__ for m in assoc.lang] == ["Linear", "ReLU", "Linear"]


def test_configure_mismatch_and_use_before_configure():
    assoc = REGISTRY.build("associator", {"name": "fc"})
    with pytest.raises(CompatibilityError, match="configure"):
        assoc(torch.randn(1, 4), torch.randn(1, 4))
    assoc.configure(48, 32)
    with pytest.raises(CompatibilityError, match="language dim 48"):
        assoc.configure(64, 32)
