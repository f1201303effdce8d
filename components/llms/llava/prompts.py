"""The language decoder's token sequences: the paper's prompts (Table III) in a chat turn, the
answers (the caption, or the phrases each followed by ``<SEG>``), training samples with their
labels and the padded batch. A mixin of ``LlavaLlamaDecoder``, so that what the trainer calls
(``decoder.build_inputs``, ``decoder.collate`` …) stays a method while the text handling lives here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from esgkit.core import NounPhrase
from esgkit.core.errors import CompatibilityError, ConfigError, InputError

from ..phrases import find_spans, format_answer
from ..span_tagger import IGNORE_INDEX, SpanTagger, bio_labels
from ..tokenizer import IMAGE_TOKEN, SEG_TOKEN

TASKS = ("description", "nouns", "grounding", "res")
CHAT_TEMPLATES = ("auto", "llava", "tokenizer")


class PromptsMixin:
    """Prompts, answers, training samples and batches; reads the decoder's ``config`` (the prompt
    texts and ``chat_template``), ``tokenizer``, ``image_token_id`` and ``span_tagger``."""

    config: Any
    tokenizer: Any
    image_token_id: int
    span_tagger: SpanTagger | None

    def _prompt_text(self, task: str, caption: str | None) -> str:
        if task not in TASKS:
            raise InputError(f"unknown language task {task!r}; one of {', '.join(TASKS)}")
        if task == "description":
            return self.config.description_prompt
        if caption is None:
            raise InputError(f"the {task!r} task needs a caption")
        template = self.config.res_prompt if task == "res" else self.config.noun_prompt
        return template.replace("{caption}", caption)

    def _uses_chat_template(self) -> bool:
        mode = self.config.chat_template
        has = bool(getattr(self.tokenizer, "chat_template", None))
        if mode == "tokenizer" and not has:
            raise ConfigError("the tokenizer has no chat template; use chat_template: llava",
                              key="language_decoder.chat_template")
        return mode == "tokenizer" or (mode == "auto" and has)

    def prompt_ids(self, task: str, caption: str | None, num_image_tokens: int) -> list[int]:
        """Token ids of the user turn up to where the answer starts, with ``num_image_tokens``
        ``<image>`` ids where Z_v goes."""
        return self._prompt_encoding(task, caption, num_image_tokens)[0]

    def _prompt_encoding(self, task: str, caption: str | None, num_image_tokens: int,
                         offsets: bool = False) -> tuple[list[int], list[tuple[int, int]], tuple[int, int]]:
        """(ids, each id's characters in the prompt text, the caption's characters in it); the
        offsets only when asked (the span tagger's targets and decoding need them)."""
        tok = self.tokenizer
        reserved = [t for t in (SEG_TOKEN, IMAGE_TOKEN, *tok.all_special_tokens) if caption and t in caption]
        if reserved:
            raise InputError(f"the caption contains the tokenizer's reserved token {reserved[0]!r}; remove it")
        prompt = self._prompt_text(task, caption)
        user = f"{IMAGE_TOKEN}\n{prompt}"
        if self._uses_chat_template():
            text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
            bos: list[int] = []
        else:
            text = f"USER: {user} ASSISTANT:"
            bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        start = -1
        if caption is not None and task != "description":
            template = self.config.res_prompt if task == "res" else self.config.noun_prompt
            start = text.find(user) + len(IMAGE_TOKEN) + 1 + template.index("{caption}")
        span = (start, start + len(caption)) if start >= 0 and caption is not None else (0, 0)
        if offsets:
            if not getattr(tok, "is_fast", False):
                raise CompatibilityError("noun_extraction: tag needs a fast tokenizer (character offsets); "
                                         "use noun_extraction: generate with this tokenizer")
            encoded = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, where = list(encoded["input_ids"]), [tuple(o) for o in encoded["offset_mapping"]]
        else:
            ids, where = tok.encode(text, add_special_tokens=False), []
        ids, where = bos + ids, [(0, 0)] * len(bos) + where
        at = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if len(at) != 1:
            raise CompatibilityError(
                f"the prompt holds {len(at)} {IMAGE_TOKEN} placeholders instead of one; check the chat template"
            )
        k = at[0]
        ids = ids[:k] + [self.image_token_id] * num_image_tokens + ids[k + 1 :]
        if offsets:
            where = where[:k] + [(0, 0)] * num_image_tokens + where[k + 1 :]
        return ids, where, span

    def answer_ids(self, task: str, caption: str | None, phrases: Sequence[str | NounPhrase] = ()) -> list[int]:
        """Target ids of the answer (ending with EOS): the caption for ``description``, else the
        phrases each followed by ``<SEG>``."""
        if task == "description":
            if caption is None:
                raise InputError("the description task needs the caption as its answer")
            text = caption
        else:
            text = format_answer(_texts(phrases))
        if not self._uses_chat_template():
            text = " " + text
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids + [self.tokenizer.eos_token_id]

    def build_inputs(
        self, task: str, caption: str | None, phrases: Sequence[str | NounPhrase] = (), num_image_tokens: int = 0
    ) -> dict[str, list[int]]:
        """One training sample: {input_ids, labels} with labels -100 on the prompt and image tokens.

        ``num_image_tokens`` is L of the Z_v this sample will be paired with (``z_v.shape[1]``)."""
        if num_image_tokens <= 0:
            raise InputError("num_image_tokens must be the number of Z_v tokens (z_v.shape[1]) of the image")
        prompt_caption = caption if task != "description" else None
        tagged = self.span_tagger is not None and task != "description"
        prompt, where, span = self._prompt_encoding(task, prompt_caption, num_image_tokens, offsets=tagged)
        answer = self.answer_ids(task, caption, phrases)
        sample = {"input_ids": prompt + answer, "labels": [IGNORE_INDEX] * len(prompt) + answer}
        if tagged:
            found = find_spans(caption or "", _texts(phrases))
            spans = [(p.start, p.end) for p in found if p is not None]
            sample["tag_labels"] = bio_labels(where, span, spans) + [IGNORE_INDEX] * len(answer)
        return sample

    def collate(self, samples: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad samples of ``build_inputs`` into input_ids, attention_mask and labels tensors."""
        length = max(len(s["input_ids"]) for s in samples)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        ids = torch.full((len(samples), length), pad, dtype=torch.long)
        labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        tags = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for b, s in enumerate(samples):
            n = len(s["input_ids"])
            ids[b, :n] = torch.tensor(s["input_ids"])
            labels[b, :n] = torch.tensor(s["labels"])
            if "tag_labels" in s:
                tags[b, :n] = torch.tensor(s["tag_labels"])
            mask[b, :n] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.span_tagger is not None:
            batch["tag_labels"] = tags
        return batch


def _texts(phrases: Sequence[str | NounPhrase]) -> list[str]:
    return [p.text if isinstance(p, NounPhrase) else str(p) for p in phrases]


__all__ = ["CHAT_TEMPLATES", "TASKS", "PromptsMixin"]
