"""A stand-in language decoder for GELLA tests: finds known nouns in the caption (no LLM), and makes
differentiable E_vl from Z_v, so the pipeline can be tested without the real LLaVA component."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from esgkit.core import Caption, LanguageDecoder, LanguageOutput, NounPhrase


class FakeLanguageDecoder(nn.Module, LanguageDecoder):
    """Test double: nouns by word matching, E_vl = Linear(mean Z_v) + a learned vector per phrase slot."""

    @dataclass
    class Config:
        nouns: list[str] = field(default_factory=lambda: ["circle", "squares", "sky"])
        dim: int = 48

    def __init__(self, config: "FakeLanguageDecoder.Config") -> None:
        super().__init__()
        self.config = config
        self.vision_dim: int | None = None

    @property
    def embed_dim(self) -> int:
        return self.config.dim

    def configure(self, vision_dim: int) -> None:
        self.vision_dim = vision_dim
        self.proj = nn.Linear(vision_dim, self.config.dim)
        self.slot = nn.Embedding(16, self.config.dim)

    def extract(self, z_v: torch.Tensor, caption: str | None) -> LanguageOutput:
        text = caption if caption is not None else "a circle under the sky"
        phrases = []
        for noun in self.config.nouns:
            m = re.search(rf"\b{re.escape(noun)}\b", text)
            if m:
                phrases.append(NounPhrase(noun, m.start(), m.end(), plural=noun.endswith("s")))
        phrases.sort(key=lambda p: p.start)
        idx = torch.arange(len(phrases), device=z_v.device)
        e_vl = self.proj(z_v.mean(1)).expand(len(phrases), -1) + self.slot(idx)
        answer = ", ".join(f"{p.text} <SEG>" for p in phrases)
        return LanguageOutput(answer, tuple(phrases), e_vl, Caption(text, tuple(phrases)))
