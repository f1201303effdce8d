"""The ``llava_llama`` language decoder as a package, one module per concern: ``decoder`` (the
network and its assembly), ``sources`` (where the weights come from), ``projector`` (W),
``prompts`` (token sequences and batches), ``generation`` (decoding at inference) and
``hf_format`` (the saved Hugging Face LLaVA directory). The registry names
``esgkit.components.llms.llava:LlavaLlamaDecoder``."""

from .decoder import LanguageForward, LlavaLlamaDecoder, phrase_means
from .projector import LinearProjector
from .sources import smollm2_gguf

__all__ = ["LanguageForward", "LinearProjector", "LlavaLlamaDecoder", "phrase_means", "smollm2_gguf"]
