"""How the language decoder finds the answer at inference: greedy generation (optionally
copy-constrained to the caption's spans), the description subtask, and ``noun_extraction: tag``
(the phrases read off the span tagger's BIO labels). A mixin of ``LlavaLlamaDecoder``, apart from
the network's teacher-forced pass so that each decoding strategy reads on its own."""

from __future__ import annotations

from typing import Any

import torch

from esgkit.core import NounPhrase
from esgkit.core.errors import CompatibilityError

from ..phrases import _STRIP, CopyConstraint, is_plural
from ..span_tagger import IGNORE_INDEX, SpanTagger, decode_spans


class GenerationMixin:
    """Greedy and copy-constrained answers, ``describe`` and ``tag_phrases``. Uses the decoder's
    ``config`` (``max_new_tokens``), ``tokenizer``, ``lm``, ``image_token_id``, ``span_tagger``,
    ``embed_inputs``/``_check_z_v`` and the prompts of ``PromptsMixin``."""

    config: Any
    tokenizer: Any
    lm: Any
    image_token_id: int
    span_tagger: SpanTagger | None

    @torch.no_grad()
    def generate_ids(self, z_v: torch.Tensor, prompt: list[int], copy_from: str | None = None) -> list[int]:
        """Greedy answer ids after ``prompt`` (without the EOS). With ``copy_from`` (a caption) the
        answer is copy-constrained (``phrases.CopyConstraint``)."""
        from transformers import GenerationConfig

        if copy_from is not None:
            return self._generate_copy(z_v, prompt, copy_from)
        tok = self.tokenizer
        ids = torch.tensor([prompt], device=z_v.device)
        embeds = self.embed_inputs(z_v, ids)
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        suppress = [self.image_token_id] + ([tok.bos_token_id] if tok.bos_token_id not in (None, eos) else [])
        generation = GenerationConfig(
            max_new_tokens=self.config.max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad,
            suppress_tokens=suppress,
        )
        out = self.lm.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), generation_config=generation)
        answer = out[0].tolist()
        return answer[: answer.index(eos)] if eos in answer else answer

    def _generate_copy(self, z_v: torch.Tensor, prompt: list[int], caption: str, top_k: int = 64) -> list[int]:
        """Greedy decoding that takes, at every step, the best of the ``top_k`` next tokens that keeps
        the answer a list of caption spans; it stops at EOS, when no candidate fits, or after
        enough tokens to copy the whole caption."""
        tok = self.tokenizer
        eos = tok.eos_token_id
        banned = {self.image_token_id, tok.bos_token_id, tok.pad_token_id} - {None, eos}
        constraint = CopyConstraint(caption)
        limit = max(self.config.max_new_tokens, 4 * len(tok.encode(caption, add_special_tokens=False)) + 8)
        ids = torch.tensor([prompt], device=z_v.device)
        out = self.lm(inputs_embeds=self.embed_inputs(z_v, ids), use_cache=True)
        answer: list[int] = []
        for _ in range(limit):
            choice = None
            text = tok.decode(answer, skip_special_tokens=False)
            for t in torch.topk(out.logits[0, -1], min(top_k, out.logits.shape[-1])).indices.tolist():
                if t in banned:
                    continue
                if t == eos:
                    if constraint.can_end(text):
                        break
                    continue
                if constraint.allows(tok.decode([*answer, t], skip_special_tokens=False)):
                    choice = t
                    break
            if choice is None:
                break
            answer.append(choice)
            out = self.lm(input_ids=torch.tensor([[choice]], device=z_v.device), **_cache_of(out), use_cache=True)
        return answer

    @torch.no_grad()
    def describe(self, z_v: torch.Tensor) -> str:
        """The image-description subtask: a caption generated from Z_v alone."""
        z_v = self._check_z_v(z_v, batch=1)
        answer = self.generate_ids(z_v, self.prompt_ids("description", None, z_v.shape[1]))
        return self.tokenizer.decode(answer, skip_special_tokens=True).strip()

    @torch.no_grad()
    def tag_phrases(self, z_v: torch.Tensor, caption: str, task: str = "nouns") -> list[NounPhrase]:
        """``noun_extraction: tag``: the caption's phrases that the span tagger marks, in order."""
        if self.span_tagger is None:
            raise CompatibilityError("this language decoder has no span tagger; set noun_extraction: tag")
        z_v = self._check_z_v(z_v, batch=1)
        ids, where, (c0, c1) = self._prompt_encoding(task, caption, z_v.shape[1], offsets=True)
        inputs = torch.tensor([ids], device=z_v.device)
        hidden = self.lm(inputs_embeds=self.embed_inputs(z_v, inputs), output_hidden_states=True,
                         use_cache=False).hidden_states[-1]
        tags = self.span_tagger(hidden)[0].argmax(-1).tolist()
        in_caption = [b > c0 and a < c1 and a < b for a, b in where]
        tags = [t if inside else IGNORE_INDEX for t, inside in zip(tags, in_caption)]
        phrases = []
        for first, last in decode_spans(tags):
            start, end = max(where[first][0], c0) - c0, min(where[last - 1][1], c1) - c0
            text = caption[start:end]
            lead, trail = len(text) - len(text.lstrip(_STRIP)), len(text) - len(text.rstrip(_STRIP))
            start, end = start + lead, end - trail
            if end > start:
                phrases.append(NounPhrase(caption[start:end], start, end, is_plural(caption[start:end])))
        return phrases


def _cache_of(out: Any) -> dict[str, Any]:
    """The key-value cache of a causal-LM output, as the keyword the next forward takes: ``cache`` in
    transformers >= 5.2x (``past_key_values``, deprecated there, warns on every token), else
    ``past_key_values``."""
    name = "cache" if "cache" in getattr(type(out), "__dataclass_fields__", {}) else "past_key_values"
    return {name: getattr(out, name)}


__all__ = ["GenerationMixin"]

