"""Fixtures for the language decoder tests: the tiny preset, and one taught a three-noun answer."""

from __future__ import annotations

import pytest
import torch

CAPTION = "A red circle is left of two blue squares under the sky."
PHRASES = ("red circle", "two blue squares", "sky")
VISION_DIM = 32
NUM_TOKENS = 9


def tiny(**overrides):
    from esgkit.components.llms.llava import LlavaLlamaDecoder

    return LlavaLlamaDecoder(LlavaLlamaDecoder.Config(**overrides))


@pytest.fixture(scope="session")
def z_v() -> torch.Tensor:
    return torch.randn(1, NUM_TOKENS, VISION_DIM, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="session")
def taught(z_v):
    """A tiny decoder overfitted (0.3 s) to answer CAPTION with the three PHRASES and their <SEG>s,
    so that real greedy generation produces three <SEG> tokens."""
    torch.manual_seed(0)
    decoder = tiny(vision_dim=VISION_DIM)
    batch = decoder.collate([decoder.build_inputs("grounding", CAPTION, PHRASES, NUM_TOKENS)])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(80):
        loss = decoder(z_v, **batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return decoder.eval()
