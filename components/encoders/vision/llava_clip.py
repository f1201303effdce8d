"""A LLaVA checkpoint's own CLIP tower as GELLA's vision encoder, so that LLaVA-1.5 weights load
without a second CLIP: the pipeline computes Z_v once with it, and feeds it to both the fuser and
the ``llava_llama`` language decoder loaded from the same directory (which skips the tower)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from esgkit.core.errors import CheckpointError, ConfigError
from esgkit.layers.llava_checkpoint import LLAVA_HINT, split_llava_state
from esgkit.layers.weights import load_state, read_model_dir

from .clip import ClipGridEncoder


class LlavaClipVisionEncoder(ClipGridEncoder):
    """The CLIP vision tower of a LLaVA directory → Z_v as LLaVA's projector expects it (tiny by default).

    Z_v = the hidden states of layer ``feature_layer`` (LLaVA-1.5: -2, the penultimate layer) with
    the CLS token dropped (LLaVA's "default" strategy), a (S/p)² grid: (B, (S/p)², C). With ``path``
    the geometry and ``vision_feature_layer`` come from the checkpoint's config.json and
    the weights from its ``model.vision_tower.*`` (or legacy ``vision_tower.*``) keys; layers after
    the feature layer and the post-layernorm are never used, so they are frozen. Input: the paper's
    aspect-preserving resize to ``image_size`` with zero padding, CLIP mean/std.
    """

    @dataclass
    class Config:
        path: str = ""  # a LLaVA directory (HF format); "" = a random tower of the geometry below
        image_size: int = 64  # tiny geometry (LLaVA-1.5: 336, patch 14, hidden 1024, 24 layers, 16 heads)
        patch_size: int = 16
        hidden_size: int = 64
        num_layers: int = 2
        num_heads: int = 2
        feature_layer: int = -2

    def __init__(self, config: LlavaClipVisionEncoder.Config) -> None:
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        self.config = config
        state = None
        if config.path:
            vision_config, state = self._read_checkpoint(Path(config.path))
        else:
            vision_config = CLIPVisionConfig(
                hidden_size=config.hidden_size, intermediate_size=4 * config.hidden_size,
                num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                image_size=config.image_size, patch_size=config.patch_size,
            )
        layers = vision_config.num_hidden_layers
        if not -layers - 1 <= config.feature_layer <= layers:
            raise ConfigError(f"feature_layer {config.feature_layer} outside the tower's {layers} layers",
                              key="vision_encoder.feature_layer")
        self.tower = CLIPVisionModel(vision_config)
        body = getattr(self.tower, "vision_model", self.tower)  # transformers 4.x nests the tower one level deeper
        if state is not None:
            state = _match_prefix(state, set(self.tower.state_dict()), "vision_model.")
            load_state(self.tower, state, f"{config.path} (vision tower)", LLAVA_HINT)
        used = config.feature_layer % (layers + 1)  # hidden_states index → number of layers it has passed
        for layer in body.encoder.layers[used:]:
            layer.requires_grad_(False)
        body.post_layernorm.requires_grad_(False)
        processor = vision_config.to_dict()
        self._set_geometry(processor["image_size"], processor["patch_size"], processor["hidden_size"])

    def _read_checkpoint(self, directory: Path) -> tuple[Any, dict[str, torch.Tensor]]:
        from transformers import LlavaConfig

        config_file = directory / "config.json"
        if not config_file.is_file() or json.loads(config_file.read_text()).get("model_type") != "llava":
            raise CheckpointError(f"{directory}: not a LLaVA directory (config.json with model_type 'llava')")
        llava = LlavaConfig.from_pretrained(str(directory))
        if not isinstance(llava.vision_feature_layer, int):
            raise CheckpointError(
                f"{directory}: vision_feature_layer {llava.vision_feature_layer} (several layers) is not supported"
            )
        if llava.vision_feature_select_strategy != "default":
            raise CheckpointError(f"{directory}: vision_feature_select_strategy {llava.vision_feature_select_strategy!r} "
                                  "keeps the CLS token, so its features are no patch grid; GELLA needs 'default'")
        self.config.feature_layer = llava.vision_feature_layer
        state = split_llava_state(read_model_dir(directory)).vision
        if not state:
            raise CheckpointError(f"{directory}: no vision tower weights (model.vision_tower.*) in this LLaVA checkpoint")
        return llava.vision_config, state

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) → Z_v (B, h·w, C)."""
        hidden = self.tower(pixel_values=pixels, output_hidden_states=True).hidden_states[self.config.feature_layer]
        return hidden[:, 1:]


def _match_prefix(state: dict[str, torch.Tensor], expected: set[str], prefix: str) -> dict[str, torch.Tensor]:
    """Add or strip ``prefix`` so that checkpoint keys follow the installed transformers' layout."""
    ours = any(k.startswith(prefix) for k in expected)
    theirs = any(k.startswith(prefix) for k in state)
    if ours and not theirs:
        return {prefix + k: v for k, v in state.items()}
    if theirs and not ours:
        return {k.removeprefix(prefix): v for k, v in state.items()}
    return state


__all__ = ["LlavaClipVisionEncoder"]
