"""The CropFormer network: shapes, shared decoder, view association, trainability."""

from __future__ import annotations

import pytest
import torch

from esgkit.components.segmenters.cropformer.model import CropFormerModel, CropFormerModelConfig


@pytest.fixture(scope="module")
def model() -> CropFormerModel:
    torch.manual_seed(0)
    return CropFormerModel(CropFormerModelConfig())


def test_output_shapes_for_test_and_training_views(model):
    cfg = model.config
    for t in (5, 2):
        out = model(torch.randn(2, t, 3, 64, 96))
        assert len(out["image"]) == len(out["batch"]) == cfg.decoder_layers + 1  # deep supervision
        assert out["image"][-1]["logits"].shape == (2, t, cfg.num_queries, 2)
        assert out["image"][-1]["masks"].shape == (2, t, cfg.num_queries, 16, 24)
        assert out["batch"][-1]["logits"].shape == (2, cfg.num_queries, 2)
        assert out["batch"][-1]["masks"].shape == (2, cfg.num_queries, t, 16, 24)
        assert all(torch.isfinite(o["masks"]).all() for o in out["image"] + out["batch"])


def test_batch_level_reuses_the_image_level_decoder():
    torch.manual_seed(0)
    crop = CropFormerModel(CropFormerModelConfig())
    base = CropFormerModel(CropFormerModelConfig(batch_level=False))
    crop_names = {n for n, _ in crop.named_parameters()}
    base_names = {n for n, _ in base.named_parameters()}
    # The only parameters CropFormer adds to Mask2Former are the view association module's.
    assert crop_names - base_names == {n for n in crop_names if n.startswith("association.")}
    assert crop_names > base_names


def test_image_level_views_are_independent(model):
    # Changing a crop view leaves the other views' image-level predictions unchanged, while the
    # batch-level prediction (which sees every view) moves. (Eval mode: BatchNorm uses running stats.)
    model.eval()
    torch.manual_seed(1)
    views = torch.randn(1, 3, 3, 64, 64)
    edited = views.clone()
    edited[0, 2] = torch.randn(3, 64, 64)
    with torch.no_grad():
        a, b = model(views), model(edited)
    torch.testing.assert_close(a["image"][-1]["masks"][0, :2], b["image"][-1]["masks"][0, :2])
    assert not torch.allclose(a["batch"][-1]["masks"][0, :, 0], b["batch"][-1]["masks"][0, :, 0])


def test_mask2former_has_no_batch_level():
    model = CropFormerModel(CropFormerModelConfig(batch_level=False))
    out = model(torch.randn(1, 1, 3, 64, 64))
    assert set(out) == {"image"}


def test_hidden_dim_must_suit_group_norm():
    with pytest.raises(ValueError, match="multiple of 32"):
        CropFormerModel(CropFormerModelConfig(hidden_dim=48))


def test_overfits_one_sample_with_the_joint_loss():
    """0.5·image-level + batch-level losses with the training package's criterion go down."""
    criterion_mod = pytest.importorskip("esgkit.training.criterion")
    torch.manual_seed(0)
    model = CropFormerModel(CropFormerModelConfig())
    criterion = criterion_mod.SetCriterion(criterion_mod.SetCriterionConfig(num_points=0))
    views = torch.randn(1, 2, 3, 64, 64)
    target = torch.zeros(2, 2, 16, 16)  # 2 entities × 2 views
    target[0, :, :8] = 1
    target[1, 0, 8:] = 1  # entity 1 is absent from view 1
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_fn() -> torch.Tensor:
        out = model(views)
        batch = out["batch"]
        loss = sum(criterion(batch[-1]["logits"], batch[-1]["masks"], [target],
                             aux=[(o["logits"], o["masks"]) for o in batch[:-1]]).values())
        for v in range(2):
            present = target[:, v].flatten(1).any(1)
            image = out["image"]
            per_view = criterion(image[-1]["logits"][:, v], image[-1]["masks"][:, v], [target[present, v]])
            loss = loss + 0.5 * sum(per_view.values())
        return loss

    with torch.no_grad():
        first = float(loss_fn())
    for _ in range(12):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(loss_fn()) < 0.7 * first
