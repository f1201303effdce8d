"""Writing the language decoder as a Hugging Face LLaVA directory (config.json of a LlavaConfig,
model.safetensors, the tokenizer) and reading one back: a mixin of ``LlavaLlamaDecoder``, so that
the one place that knows the saved layout sits beside ``sources.py``, which reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import torch

from esgkit.core.errors import CompatibilityError
from esgkit.layers.llava_checkpoint import join_llava_state

from ..lora import merged_state_dict
from ..span_tagger import SpanTagger
from .sources import SPAN_TAGGER_FILE

_Decoder = TypeVar("_Decoder", bound="HFFormatMixin")


class HFFormatMixin:
    """``save_pretrained`` / ``from_pretrained``; reads the decoder's ``lm``, ``projector``,
    ``tokenizer``, ``span_tagger``, ``image_token_id``, ``vision_dim`` and the LLaVA parts it keeps
    (``vision_tower_state``, ``vision_config``, ``llava_settings``)."""

    config: Any
    Config: Any
    lm: Any
    projector: torch.nn.Module | None
    tokenizer: Any
    span_tagger: SpanTagger | None
    image_token_id: int
    vision_dim: int
    vision_tower_state: dict[str, torch.Tensor]
    vision_config: dict[str, Any] | None
    llava_settings: dict[str, Any]

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (LlavaConfig), model.safetensors and the tokenizer: a LLaVA directory
        that ``source: hf_dir`` reloads exactly (and ``LlavaForConditionalGeneration`` can read)."""
        from transformers import LlavaConfig

        if self.projector is None:
            raise CompatibilityError("configure(vision_dim) before saving: the projector does not exist yet")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lm_state = merged_state_dict(self.lm)  # LoRA adapters (if any) folded into the weights
        if self.lm.config.tie_word_embeddings:
            lm_state.pop("lm_head.weight", None)
        state = join_llava_state(lm_state, self.projector.state_dict(), self.vision_tower_state)
        _save(state, directory / "model.safetensors")
        text_config = self.lm.config.to_dict()
        text_config.pop("quantization_config", None)
        vision_config = self.vision_config or {
            "model_type": "clip_vision_model", "hidden_size": self.vision_dim, "intermediate_size": self.vision_dim,
            "num_hidden_layers": 1, "num_attention_heads": 1,
        }
        llava = LlavaConfig(
            vision_config=vision_config, text_config=text_config, image_token_index=self.image_token_id,
            tie_word_embeddings=bool(self.lm.config.tie_word_embeddings), **self.llava_settings,
        )
        llava.esgkit_projector = self.config.projector
        llava.save_pretrained(str(directory))
        if self.span_tagger is not None:  # not part of the LLaVA format: a file of its own beside it
            _save(self.span_tagger.state_dict(), directory / SPAN_TAGGER_FILE)
        self.tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls: type[_Decoder], directory: str | Path, **overrides: Any) -> _Decoder:
        """Reload a directory written by ``save_pretrained`` (or any LLaVA/causal-LM directory)."""
        return cls(cls.Config(source="hf_dir", path=str(directory), **overrides))


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(path), metadata={"format": "pt"})


__all__ = ["HFFormatMixin"]
