"""Run the official CropFormer release's own modules beside esgkit's converted ones and print the largest
difference of each output: the Swin and HorNet backbones, the MSDeformAttn pixel decoder and the shared
decoder with its view association and batch level.

    git clone https://github.com/qqlu/Entity            # the release (its code is not part of esgkit)
    python scripts/check_cropformer_release.py --entity Entity

The release's modules are read from that checkout into a temporary folder. detectron2, fvcore and the
CUDA deformable-attention op are replaced by the few stand-ins they need: detectron2's ``Conv2d`` with
norm and activation, GroupNorm for ``get_norm("GN")``, and registries and ``configurable`` that do
nothing. Without the CUDA op, the release falls back to its own PyTorch attention core. Random weights
go through ``esgkit.components.segmenters.cropformer.official.convert_state`` into esgkit's network.
Measured 2026-12-05 (float32, random weights): the backbones differ by at most 1.1e-6 at 96×128,
100×140 and 224×320, the pixel decoder and the image level not at all, and the batch level by at most
1.7e-4 on mask logits of magnitude about 30.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import esgkit.layers.backbones  # noqa: F401  (before timm: the torchvision shim)
import torch
from torch import nn

RELEASE = Path("Entityv2/CropFormer/mask2former/modeling")
STUBS = {
    "detectron2/__init__.py": "",
    "detectron2/config.py": "def configurable(fn):\n    return fn\n",
    "detectron2/modeling.py": "class _R:\n    def register(self):\n        return lambda c: c\n"
                              "BACKBONE_REGISTRY = SEM_SEG_HEADS_REGISTRY = _R()\n"
                              "Backbone = object\nShapeSpec = None\n",
    "detectron2/layers.py": '''from collections import namedtuple
import torch.nn as nn
ShapeSpec = namedtuple("ShapeSpec", ["channels", "height", "width", "stride"], defaults=[None] * 4)
class Conv2d(nn.Conv2d):
    def __init__(self, *a, norm=None, activation=None, **k):
        super().__init__(*a, **k)
        self.norm, self.activation = norm, activation
    def forward(self, x):
        x = super().forward(x)
        x = self.norm(x) if self.norm is not None else x
        return self.activation(x) if self.activation is not None else x
def get_norm(norm, channels):
    return nn.GroupNorm(32, channels) if norm == "GN" else None
''',
    "fvcore/__init__.py": "",
    "fvcore/nn/__init__.py": "",
    "fvcore/nn/weight_init.py": "def c2_xavier_fill(m):\n    pass\n",
    "MultiScaleDeformableAttention.py": "def ms_deform_attn_forward(*a, **k):\n    raise RuntimeError('no CUDA op')\n",
    "mask2former/__init__.py": "",
    "mask2former/modeling/__init__.py": "",
    "mask2former/modeling/backbone/__init__.py": "",
    "mask2former/modeling/pixel_decoder/__init__.py": "",
    "mask2former/modeling/pixel_decoder/ops/__init__.py": "",
    "mask2former/modeling/transformer_decoder/__init__.py": "",
    "mask2former/modeling/transformer_decoder/maskformer_transformer_decoder.py":
        "class _R:\n    def register(self):\n        return lambda c: c\nTRANSFORMER_DECODER_REGISTRY = _R()\n",
}
FILES = ["backbone/swin.py", "backbone/hornet.py", "pixel_decoder/msdeformattn.py",
         "pixel_decoder/ops/functions/__init__.py", "pixel_decoder/ops/functions/ms_deform_attn_func.py",
         "pixel_decoder/ops/modules/__init__.py", "pixel_decoder/ops/modules/ms_deform_attn.py",
         "transformer_decoder/position_encoding.py", "transformer_decoder/transformer.py",
         "transformer_decoder/cropformer_transformer_decoder.py"]


def stage(entity: Path, folder: Path) -> None:
    """The release's module files under ``folder/mask2former/modeling`` (their detectron2 backbone wrappers
    cut off), beside the stand-ins."""
    for name, text in STUBS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    for name in FILES:
        text = (entity / RELEASE / name).read_text()
        if name.startswith("backbone/"):
            text = text.split("@BACKBONE_REGISTRY.register()")[0]
        (folder / "mask2former/modeling" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "mask2former/modeling" / name).write_text(text)


def worst(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> str:
    return f"{max((a - b).abs().max().item() for a, b in pairs):.2e} (outputs ~{pairs[-1][0].abs().mean().item():.1f})"


def random_state(module: nn.Module, scale: float) -> dict[str, torch.Tensor]:
    state = {k: torch.randn_like(v) * scale if v.dtype.is_floating_point else v for k, v in module.state_dict().items()}
    module.load_state_dict(state)
    return state


def converted(prefix: str, state: dict[str, torch.Tensor], strip: str = "") -> dict[str, torch.Tensor]:
    from esgkit.components.segmenters.cropformer.official import convert_state

    out = convert_state({f"{prefix}{k}": v for k, v in state.items()})
    return {k[len(strip):]: v for k, v in out.items()} if strip else out


def check_backbones() -> None:
    from mask2former.modeling.backbone.hornet import HorNet
    from mask2former.modeling.backbone.swin import SwinTransformer

    from esgkit.layers.backbones import D2_SWIN, PyramidBackbone
    from esgkit.layers.hornet import HORNET

    g = D2_SWIN["d2_swin_test"]
    swin = SwinTransformer(embed_dim=g["embed_dim"], depths=g["depths"], num_heads=g["num_heads"],
                           window_size=g["window_size"], drop_path_rate=0.0)
    swin.eval()
    ours = PyramidBackbone("d2_swin_test").eval()
    ours.load_state_dict(converted("backbone.", random_state(swin, 0.2), "backbone."))
    h = HORNET["d2_hornet_test"]
    gnconv = [f"partial(gnconv, order={o}, s=1/3" + (f", h={s[0]}, w={s[1]}, gflayer=GlobalLocalFilter)" if s else ")")
              for o, s in zip(h.orders, h.spectral)]
    hornet = HorNet(depths=h.depths, base_dim=h.base_dim, gnconv=gnconv).eval()
    theirs = PyramidBackbone("d2_hornet_test").eval()
    theirs.load_state_dict(converted("backbone.", random_state(hornet, 0.3), "backbone."))
    for size in ((96, 128), (100, 140), (224, 320)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            print(f"Swin   {size}: {worst(list(zip(swin(x).values(), ours(x))))}")
            print(f"HorNet {size}: {worst(list(zip(hornet.forward_features(x).values(), theirs(x))))}")


def check_heads() -> None:
    from detectron2.layers import ShapeSpec
    from mask2former.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder
    from mask2former.modeling.transformer_decoder.cropformer_transformer_decoder import (
        CropSharedMultiScaleMaskedTransformerDecoder,
    )

    from esgkit.components.segmenters.cropformer.model import CropFormerModel, CropFormerModelConfig

    dim, heads, queries, ffn, pixel_ffn, layers, views = 64, 4, 6, 96, 48, 4, 5
    channels = {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    pixel = MSDeformAttnPixelDecoder(
        {k: ShapeSpec(channels=c, stride=4 * 2**i) for i, (k, c) in enumerate(channels.items())},
        transformer_dropout=0.0, transformer_nheads=heads, transformer_dim_feedforward=pixel_ffn,
        transformer_enc_layers=2, conv_dim=dim, mask_dim=dim, norm="GN",
        transformer_in_features=["res3", "res4", "res5"], common_stride=4).eval()
    ns = types.SimpleNamespace
    cfg = ns(ENTITY=ns(FUSE_NUM_LAYERS=1, FUSE_ENC_HIDDIEN_DIM=dim, FUSE_ENC_NHEADS=heads, FUSE_ENC_PRE_NORM=False,
                       FUSE_ENC_DIM_FEEDFORWARD=ffn, CROP_SAMPLE_NUM_TRAIN=1))
    decoder = CropSharedMultiScaleMaskedTransformerDecoder(
        cfg, dim, True, num_classes=1, hidden_dim=dim, num_queries=queries, nheads=heads, dim_feedforward=ffn,
        dec_layers=layers, pre_norm=False, mask_dim=dim, enforce_input_project=False).eval()
    state = {**converted("sem_seg_head.pixel_decoder.", random_state(pixel, 0.3)),
             **converted("sem_seg_head.predictor.", random_state(decoder, 0.5))}
    ours = CropFormerModel(CropFormerModelConfig(
        backbone="d2_hornet_test", hidden_dim=dim, num_heads=heads, num_queries=queries, dim_feedforward=ffn,
        decoder_layers=layers, pixel_decoder_layers=2, pixel_decoder_feedforward=pixel_ffn, view_code="order",
        official_association=True)).eval()
    report = ours.load_state_dict(state, strict=False)
    assert not report.unexpected_keys and all(k.startswith("backbone.") for k in report.missing_keys), report
    feats = {k: torch.randn(views, c, 64 // 2**i, 96 // 2**i) for i, (k, c) in enumerate(channels.items())}

    class Given(nn.Module):  # the backbone's features go in directly
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            return list(feats.values())

    ours.backbone = Given()
    with torch.no_grad():
        mask_features, _, levels = pixel.forward_features(feats)
        pix = ours.pixel_decoder(list(feats.values()))
        image, batch = decoder(levels, mask_features)
        mine = ours(torch.zeros(1, views, 3, 8, 8))
    final = mine["batch"][-1]
    steps = [(a["pred_masks"], b["masks"]) for a, b in zip(batch["aux_outputs"], mine["batch"])]
    print("pixel decoder:", worst([(mask_features, pix.mask_features), *zip(levels, pix.multi_scale_features)]))
    print("image level  :", worst([(image["pred_logits"], mine["image"][-1]["logits"][0]),
                                   (image["pred_masks"], mine["image"][-1]["masks"][0])]))
    print("batch level  :", worst([(batch["pred_logits"], final["logits"]), *steps,
                                   (batch["pred_masks"], final["masks"])]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entity", required=True, help="a checkout of github.com/qqlu/Entity")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        stage(Path(args.entity), Path(folder))
        sys.path.insert(0, folder)
        check_backbones()
        check_heads()
    return 0


if __name__ == "__main__":
    sys.exit(main())
