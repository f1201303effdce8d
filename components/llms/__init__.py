"""The ``language_decoder`` kind: GELLA's language decoder, a LLaVA-style LLaMA-family LM that lists
the nouns of a caption, each followed by ``<SEG>``, and gives E_vl at every ``<SEG>``."""

from esgkit.core.lazy import lazy_exports

__all__ = ["LlavaLlamaDecoder", "register_builtins"]
__getattr__, __dir__ = lazy_exports(__name__, {"LlavaLlamaDecoder": "llava"})


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register("language_decoder", "llava_llama", f"{__name__}.llava:LlavaLlamaDecoder",
             "LLaVA-1.5-style LLaMA-family decoder: nouns with <SEG>, E_vl at each <SEG> "
             "(source: tiny|hf_dir|gguf|smollm2)")
