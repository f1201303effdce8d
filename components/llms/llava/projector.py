"""The projection W of Z_v into the LM's embedding space (paper eq. 10), in its own module because
two places make one: the decoder's ``configure`` (a new, seeded W) and the weight sources (W read
from a LLaVA directory or a ``projector_path`` file)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn

from esgkit.core.errors import CheckpointError
from esgkit.layers.llava_checkpoint import LLAVA_HINT
from esgkit.layers.weights import load_state, mismatch, raise_mismatch

PROJECTORS = ("mlp", "linear")
_FILE_PREFIXES = ("model.multi_modal_projector.", "multi_modal_projector.")


class LinearProjector(nn.Module):
    """The paper's projection H_v = W·Z_v (eq. 10): one linear layer. Keys follow LLaVA's ``linear_1``."""

    def __init__(self, vision_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_1(features)


def projector_kind(state: Mapping[str, torch.Tensor]) -> str:
    """``mlp`` (LLaVA-1.5: linear-GELU-linear) when the weights have a second layer, else ``linear``."""
    return "mlp" if any(k.startswith("linear_2.") for k in state) else "linear"


def projector_in_dim(state: Mapping[str, torch.Tensor]) -> int:
    """The width of Z_v that projector weights take (``linear_1.weight`` is (hidden, vision_dim))."""
    weight = state.get("linear_1.weight")
    if weight is None:
        raise_mismatch("the projector weights", mismatch(state, {"linear_1.weight"}), LLAVA_HINT)
    return int(weight.shape[1])  # type: ignore[union-attr]


def read_projector_file(path: Path) -> dict[str, torch.Tensor]:
    """``projector_path``: a safetensors file of the projector alone, its keys with or without
    LLaVA's ``(model.)multi_modal_projector.`` prefix."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: no such projector file (projector_path)")
    state = load_file(str(path))
    return {k.removeprefix(_FILE_PREFIXES[0]).removeprefix(_FILE_PREFIXES[1]): v for k, v in state.items()}


def build_projector(kind: str, vision_dim: int, hidden_size: int, llava_settings: Mapping[str, Any],
                    dtype: torch.dtype, state: Mapping[str, torch.Tensor] | None = None, what: str = "") -> nn.Module:
    """W of ``kind`` (``mlp``: transformers' ``LlavaMultiModalProjector``; ``linear``) from
    ``vision_dim`` to ``hidden_size``, random (the caller seeds it) or loaded from ``state``."""
    if kind == "linear":
        projector: nn.Module = LinearProjector(vision_dim, hidden_size)
    else:
        from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

        # The projector reads only these fields of a LlavaConfig (whose validation would want a
        # complete CLIP geometry for what is here just a width).
        geometry = SimpleNamespace(
            vision_config=SimpleNamespace(hidden_size=vision_dim), text_config=SimpleNamespace(hidden_size=hidden_size),
            vision_feature_layer=-1, projector_hidden_act=llava_settings["projector_hidden_act"],
            multimodal_projector_bias=llava_settings["multimodal_projector_bias"],
        )
        projector = LlavaMultiModalProjector(geometry)
    projector = projector.to(dtype)
    if state is not None:
        load_state(projector, state, f"{what} (projector)", LLAVA_HINT)
    return projector


__all__ = ["PROJECTORS", "LinearProjector", "build_projector", "projector_in_dim", "projector_kind",
           "read_projector_file"]
