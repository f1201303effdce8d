"""esgkit llms: GELLA's language decoder (LLaVA-style LLaMA-family LM that emits <SEG>), and a
LLaVA checkpoint's own CLIP tower as a vision encoder."""


def register_builtins(register) -> None:  # type: ignore[no-untyped-def]
    """Register this folder's built-in components (lazy 'module:Class' factories)."""
    register(
        "language_decoder",
        "llava_llama",
        "esgkit.components.llms.llava:LlavaLlamaDecoder",
        "LLaVA-1.5-style LLaMA-family decoder: nouns with <SEG>, E_vl at each <SEG> (source: tiny|hf_dir|gguf|smollm2)",
    )
    register(
        "vision_encoder",
        "llava_clip",
        "esgkit.components.llms.llava_vision:LlavaClipVisionEncoder",
        "a LLaVA checkpoint's own CLIP tower → Z_v (penultimate layer, CLS dropped), so LLaVA loads without a second CLIP",
    )
