"""The CLIP vision encoder (open_clip): patch-grid tokens Z_v from the last transformer layer, on a
square input made by the paper's aspect-preserving resize and zero padding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from esgkit.core import ConfigError, InputError, VisionEncoder
from esgkit.layers.geometry import resize_pad
from esgkit.layers.weights import load_weights, read_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipGridEncoder(nn.Module, VisionEncoder):
    """What every CLIP-style tower here shares: the patch-grid geometry and the paper's input
    preprocessing. Subclasses call ``_set_geometry`` once their tower is built."""

    def _set_geometry(self, image_size: int, patch_size: int, width: int) -> None:
        self._size = int(image_size)
        self._grid = (self._size // int(patch_size),) * 2
        self._dim = int(width)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self._dim

    @property
    def grid_size(self) -> tuple[int, int]:
        return self._grid

    @property
    def image_size(self) -> int:
        return self._size

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) → normalised float (3, S, S): resize keeping aspect (both sides ≤ S), black
        padding at the bottom/right (zeros before normalisation), then CLIP mean/std."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"{type(self).__name__} needs an RGB image (H, W, 3); got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        x, _ = resize_pad(x, self._size)
        return (x - self.mean) / self.std


class ClipVisionEncoder(ClipGridEncoder):
    """open_clip ViT vision tower → last-layer patch tokens (tiny by default; arch=ViT-L-14-336 for the paper)."""

    @dataclass
    class Config:
        arch: str = ""          # an open_clip model name (ViT-L-14-336, ViT-B-16, ...); "" = the fields below
        image_size: int = 64    # input side S (224 or 336 for the real models); 0 = the arch's own
        width: int = 64         # custom tower (arch = ""): width, layers, heads via head_width, patch
        layers: int = 2
        head_width: int = 32
        patch_size: int = 16
        quick_gelu: bool = False  # True for OpenAI-trained weights
        checkpoint: str = ""      # local open_clip checkpoint (.safetensors / .bin / .pt), full CLIP or visual only

    def __init__(self, config: Any) -> None:
        super().__init__()
        import open_clip
        from open_clip.model import _build_vision_tower

        self.config = config
        if config.arch:
            model_cfg = open_clip.get_model_config(config.arch)
            if model_cfg is None:
                known = [m for m in open_clip.list_models() if m.startswith("ViT")][:12]
                raise ConfigError(f"open_clip has no architecture {config.arch!r} (e.g. {', '.join(known)})", key="arch")
            vision_cfg = dict(model_cfg["vision_cfg"])
            embed_dim = model_cfg["embed_dim"]
            if model_cfg.get("quick_gelu"):
                config.quick_gelu = True
        else:
            vision_cfg = {"width": config.width, "layers": config.layers, "head_width": config.head_width,
                          "patch_size": config.patch_size, "image_size": config.image_size or 64}
            embed_dim = config.width
        if config.image_size:
            vision_cfg["image_size"] = config.image_size
        if "timm_model_name" in vision_cfg or "patch_size" not in vision_cfg:
            raise ConfigError(f"{config.arch!r} is not a ViT tower; use a ViT-* architecture", key="arch")
        vision_cfg["output_tokens"] = True
        self.visual = _build_vision_tower(embed_dim, vision_cfg, quick_gelu=config.quick_gelu)
        # Only the patch tokens are used: drop the pooled-output projection, so that every parameter
        # left is trained (its checkpoint key, visual.proj, is skipped on loading).
        self.visual.proj = None
        self._set_geometry(vision_cfg["image_size"], vision_cfg["patch_size"], vision_cfg["width"])
        if config.checkpoint:
            self.load_checkpoint(config.checkpoint)

    def load_checkpoint(self, path: str) -> None:
        """Load an open_clip checkpoint: a whole CLIP state dict (``visual.*`` keys are taken) or the
        vision tower alone. Text-tower keys are ignored; anything else missing/unexpected is an error."""
        keys = read_state_dict(path).keys()
        prefix = "visual." if any(k.startswith("visual.") for k in keys) else ""
        load_weights(self.visual, path, what="clip vision encoder", prefix=prefix, skip=("proj",))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → Z_v (B, h·w, C): the last layer's patch tokens (after ln_post, before the projection)."""
        _, tokens = self.visual(pixels)
        return tokens


__all__ = ["CLIP_MEAN", "CLIP_STD", "ClipGridEncoder", "ClipVisionEncoder"]
