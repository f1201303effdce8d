"""The Hugging Face LLaVA checkpoint layout, shared by the ``llava_llama`` language decoder and the
``llava_clip`` vision encoder (which read one LLaVA folder between them), key by key, so that a wrong
checkpoint fails with the names of its missing and unexpected keys instead of loading half-random.

Both key layouts of ``LlavaForConditionalGeneration`` are read:

* transformers ≥ 4.52 / 5.x: ``model.language_model.*``, ``lm_head.*``, ``model.multi_modal_projector.*``,
  ``model.vision_tower.*``;
* older llava-hf checkpoints: ``language_model.model.*``, ``language_model.lm_head.*``,
  ``multi_modal_projector.*``, ``vision_tower.*``.

They are split into the causal LM's own keys (``model.*``, ``lm_head.*``), the projector's keys and
the vision tower's keys; the writer uses the current layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from esgkit.core.errors import CheckpointError

LLAVA_HINT = "check that the checkpoint and its config.json belong together"

# (prefix in the file, prefix in our modules, part)
_LAYOUTS = (
    ("model.language_model.", "model.", "lm"),
    ("lm_head.", "lm_head.", "lm"),
    ("model.multi_modal_projector.", "", "projector"),
    ("model.vision_tower.", "", "vision"),
    ("language_model.model.", "model.", "lm"),
    ("language_model.lm_head.", "lm_head.", "lm"),
    ("multi_modal_projector.", "", "projector"),
    ("vision_tower.", "", "vision"),
)


@dataclass
class LlavaState:
    """A LLaVA state dict split by part; ``unknown`` keys belong to none of them."""

    lm: dict[str, torch.Tensor] = field(default_factory=dict)
    projector: dict[str, torch.Tensor] = field(default_factory=dict)
    vision: dict[str, torch.Tensor] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def split_llava_state(state: dict[str, torch.Tensor]) -> LlavaState:
    out = LlavaState()
    for key, tensor in state.items():
        for prefix, ours, part in _LAYOUTS:
            if key.startswith(prefix):
                getattr(out, part)[ours + key[len(prefix) :]] = tensor
                break
        else:
            out.unknown.append(key)
    return out


def join_llava_state(
    lm: dict[str, torch.Tensor], projector: dict[str, torch.Tensor], vision: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The inverse of ``split_llava_state`` in the current transformers layout."""
    state: dict[str, torch.Tensor] = {}
    for key, tensor in lm.items():
        if key.startswith("model."):
            state["model.language_model." + key[len("model.") :]] = tensor
        elif key.startswith("lm_head."):
            state[key] = tensor
        else:
            raise CheckpointError(f"cannot place LM key {key!r} in the LLaVA layout (expected model.* or lm_head.*)")
    state.update({"model.multi_modal_projector." + k: v for k, v in projector.items()})
    state.update({"model.vision_tower." + k: v for k, v in vision.items()})
    return state


__all__ = ["LLAVA_HINT", "LlavaState", "join_llava_state", "split_llava_state"]
