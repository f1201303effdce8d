"""Reading and writing LLaVA checkpoints in the Hugging Face format, key by key, so that a wrong
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

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from esgkit.core.errors import CheckpointError

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


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a Hugging Face model directory: ``model.safetensors``, a sharded
    ``model.safetensors.index.json``, or ``pytorch_model.bin`` (read with ``weights_only=True``)."""
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(directory / shard)))
            return state
        if legacy.is_file():
            return torch.load(str(legacy), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt file, bad JSON, pickled code refused by weights_only
        raise CheckpointError(f"{directory}: cannot read the weights ({type(exc).__name__}: {exc})") from exc
    raise CheckpointError(
        f"{directory}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin found; "
        "give a Hugging Face model directory"
    )


def check_keys(
    what: str, expected: set[str], found: set[str], optional: set[str] = frozenset(), unknown: list[str] = ()
) -> None:
    """Raise CheckpointError naming missing and unexpected keys (both lists in one message)."""
    from esgkit.core.checkpoints import key_parts

    parts = key_parts(list(expected - found - set(optional)), list((found - expected) | set(unknown)), quote=True)
    if parts:
        raise CheckpointError(
            f"{what} does not fit the model it configures ({'; '.join(parts)}); "
            "check that the checkpoint and its config.json belong together"
        )


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict`` that reports shape mismatches as CheckpointError (keys are checked before)."""
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{what}: {str(exc).strip().splitlines()[-1].strip()}") from exc
