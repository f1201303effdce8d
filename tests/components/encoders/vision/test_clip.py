"""CLIP vision encoder: patch-grid tokens, the paper's resize + zero padding, open_clip presets and
loading an open_clip checkpoint file."""

import numpy as np
import pytest
import torch

from esgkit.core import CheckpointError, ConfigError, get_registry
from esgkit.components.encoders.vision.clip import CLIP_MEAN, CLIP_STD

REGISTRY = get_registry()


def test_tiny_default_gives_patch_grid_tokens():
    enc = REGISTRY.build("vision_encoder", {"name": "clip"})
    assert (enc.image_size, enc.grid_size, enc.embed_dim) == (64, (4, 4), 64)
    z = enc(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 16, 64)
    z.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch, size, grid, dim", [("ViT-L-14-336", 336, 24, 1024), ("ViT-B-16", 224, 14, 768),
                                                   ("ViT-B-32", 224, 7, 768), ("ViT-L-14-336", 224, 16, 1024)])
def test_open_clip_architectures_on_meta(arch, size, grid, dim):
    with torch.device("meta"):
        enc = REGISTRY.build("vision_encoder", {"name": "clip", "arch": arch, "image_size": size})
        z = enc(torch.zeros(1, 3, size, size))
    assert enc.grid_size == (grid, grid) and enc.embed_dim == dim
    assert z.shape == (1, grid * grid, dim)


def test_unknown_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="ViT-Q-99"):
        REGISTRY.build("vision_encoder", {"name": "clip", "arch": "ViT-Q-99"})


def test_preprocess_keeps_aspect_and_pads_with_zeros():
    enc = REGISTRY.build("vision_encoder", {"name": "clip"})
    x = enc.preprocess(np.full((50, 100, 3), 255, np.uint8))   # wide: resized to 32×64, padded below
    assert x.shape == (3, 64, 64)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(x[:, 5, 10], white, atol=1e-4, rtol=0)
    torch.testing.assert_close(x[:, 40, 10], black, atol=1e-4, rtol=0)
    tall = enc.preprocess(np.full((100, 25, 3), 255, np.uint8))  # tall: 64×16, padded on the right
    torch.testing.assert_close(tall[:, 60, 8], white, atol=1e-4, rtol=0)
    torch.testing.assert_close(tall[:, 60, 40], black, atol=1e-4, rtol=0)


def _open_clip_model():
    from open_clip.model import CLIP

    vision = {"width": 64, "layers": 2, "head_width": 32, "patch_size": 16, "image_size": 64}
    text = {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}
    torch.manual_seed(3)
    return CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text).eval()


def test_loads_an_open_clip_checkpoint(tmp_path):
    from safetensors.torch import save_file

    model = _open_clip_model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "open_clip_model.safetensors")
    torch.save(state, tmp_path / "open_clip_model.pt")
    pixels = torch.rand(1, 3, 64, 64)
    model.visual.output_tokens = True
    want = model.visual(pixels)[1]
    for f in ("open_clip_model.safetensors", "open_clip_model.pt"):
        enc = REGISTRY.build("vision_encoder", {"name": "clip", "checkpoint": str(tmp_path / f)}).eval()
        torch.testing.assert_close(enc(pixels), want)


def test_checkpoint_of_another_geometry_is_refused(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in _open_clip_model().state_dict().items()}
    state["visual.unknown_block.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="unknown_block"):
        REGISTRY.build("vision_encoder", {"name": "clip", "checkpoint": str(tmp_path / "bad.safetensors")})
    with pytest.raises(CheckpointError, match="no such file"):
        REGISTRY.build("vision_encoder", {"name": "clip", "checkpoint": str(tmp_path / "missing.safetensors")})
