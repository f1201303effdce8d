"""The ``language_decoder`` kind: GELLA's language decoder, a LLaVA-style LLaMA-family LM that lists
the nouns of a caption, each followed by ``<SEG>``, and gives E_vl at every ``<SEG>``."""

from esgkit.core.lazy import builtin_components

__all__, __getattr__, __dir__, register_builtins = builtin_components(__name__, [
    ("language_decoder", "llava_llama", "llava:LlavaLlamaDecoder",
     "LLaVA-1.5-style LLaMA-family decoder: nouns with <SEG>, E_vl at each <SEG> (source: tiny|hf_dir|gguf|smollm2)"),
])
