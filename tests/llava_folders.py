"""A tiny LLaVA-1.5 model in the llava-hf layout, saved by transformers: shared by the tests of the
llava_clip tower and of GELLA on a LLaVA folder."""

from pathlib import Path

import torch


def save_tiny_llava(path: Path, tokenizer, vision_layers: int = 3):
    """Build (seed 0), save with ``save_pretrained`` beside ``tokenizer`` and return the model."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from esgkit.components.llms.tokenizer import IMAGE_TOKEN

    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model
