"""``referrer.backbone_checkpoint``: the visual backbone of PBREC-MT (a grid), CMPC (levels) and QRNet
(stem + stages) starts from timm's published ImageNet file of the whole classifier, or from esgkit's own
weights; every backbone tensor comes from the file, and a file of another network is refused."""

from __future__ import annotations

import pytest
import torch

from esgkit.core import get_registry
from esgkit.core.errors import CheckpointError

SWIN = {"img_size": 64, "window_size": 4, "embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]}
CASES = [
    ("pbrec_mt", {"backbone": "mobilenetv2_050"}),
    ("cmpc", {"backbone": "mobilenetv2_050"}),
    ("qrnet", {"backbone": "swin_tiny_patch4_window7_224", "backbone_options": SWIN}),
]


def signature(t: torch.Tensor) -> tuple:
    return tuple(t.shape), round(t.double().sum().item(), 6), round(t.double().abs().sum().item(), 6)


@pytest.mark.parametrize("name, options", CASES, ids=[c[0] for c in CASES])
def test_the_backbone_starts_from_a_published_classifier_file(tmp_path, name, options):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    classifier = timm.create_model(options["backbone"], pretrained=False, **options.get("backbone_options", {}))
    state = {k: v.contiguous() for k, v in classifier.state_dict().items()}
    assert any(k.startswith(("classifier.", "head.")) for k in state)  # the published layout: head included
    save_file(state, str(tmp_path / "imagenet.safetensors"))
    published = {signature(v) for v in state.values()}

    referrer = get_registry().build("referrer", {"name": name, **options,
                                                 "backbone_checkpoint": str(tmp_path / "imagenet.safetensors")})
    for key, value in referrer.backbone.named_parameters():
        assert signature(value) in published, key  # every backbone parameter came from the file

    own = {k: v.contiguous() for k, v in referrer.backbone.state_dict().items()}
    save_file(own, str(tmp_path / "own.safetensors"))  # esgkit's own names load too
    again = get_registry().build("referrer", {"name": name, **options,
                                              "backbone_checkpoint": str(tmp_path / "own.safetensors")})
    assert all(torch.equal(a, b) for a, b in zip(again.backbone.state_dict().values(), own.values()))

    other = timm.create_model("resnet18", pretrained=False)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="nor is it a published timm checkpoint"):
        get_registry().build("referrer", {"name": name, **options,
                                          "backbone_checkpoint": str(tmp_path / "other.safetensors")})
