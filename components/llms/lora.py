"""Low-rank adapters (LoRA) for the language model, without an extra dependency: the LM's linear
layers stay frozen and each target layer learns y = W·x + (alpha/r)·B·A·x. B starts at zero, so
adding adapters does not change the model; ``merged_state_dict`` folds them back into W for saving
a plain Hugging Face checkpoint."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from esgkit.core.errors import ConfigError


class LoraLinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus a trainable rank-``rank`` update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.scale * (self.lora_b @ self.lora_a)


def add_lora(model: nn.Module, targets: list[str], rank: int, alpha: float) -> int:
    """Wrap every ``nn.Linear`` whose attribute name is in ``targets`` (e.g. q_proj, v_proj);
    returns how many were wrapped."""
    found = [
        (parent, name)
        for parent in model.modules()
        for name, child in parent.named_children()
        if name in targets and isinstance(child, nn.Linear)
    ]
    if not found:
        raise ConfigError(f"no linear layer named {', '.join(targets)} in the LM for LoRA", key="language_decoder.lora_targets")
    for parent, name in found:
        setattr(parent, name, LoraLinear(getattr(parent, name), rank, alpha))
    return len(found)


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every adapter folded into its base weight, under the plain keys
    (``q_proj.weight``), as the model had before ``add_lora``."""
    state = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            prefix = f"{name}." if name else ""
            for key in ("base.weight", "base.bias", "lora_a", "lora_b"):
                state.pop(prefix + key, None)
            with torch.no_grad():
                state[prefix + "weight"] = module.merged_weight().detach()
                if module.base.bias is not None:
                    state[prefix + "bias"] = module.base.bias.detach()
    return state


__all__ = ["LoraLinear", "add_lora", "merged_state_dict"]
