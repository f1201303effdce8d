"""GELLA's language decoder: a LLaVA-1.5-style multimodal LM (transformers) that lists the nouns of
a caption, each followed by ``<SEG>``, and returns E_vl, the last-layer hidden state at every
``<SEG>`` of the actual token sequence (paper section 4.2, eqs. 10-12).

This module holds the network — configuration, assembly from a weight source, the teacher-forced
pass and ``extract`` — and composes the rest of the decoder from its package: ``sources``
(weights), ``projector`` (W), ``prompts`` (token sequences), ``generation`` (decoding) and
``hf_format`` (the saved LLaVA directory)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from esgkit.core import Caption, LanguageDecoder, LanguageOutput, NounPhrase
from esgkit.core.errors import CompatibilityError, ConfigError, InputError

from ..lora import add_lora
from ..phrases import clean_phrase, find_spans
from ..span_tagger import IGNORE_INDEX, SpanTagger
from ..tokenizer import add_gella_tokens
from .generation import GenerationMixin
from .hf_format import HFFormatMixin
from .projector import PROJECTORS, build_projector, projector_in_dim, projector_kind, read_projector_file
from .prompts import CHAT_TEMPLATES, PromptsMixin
from .sources import SOURCES, build_span_tagger, fit_embeddings, load_lm

NOUN_EXTRACTIONS = ("generate", "tag")
SEG_READOUTS = ("hidden", "hidden+phrase")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LanguageForward:
    """What ``LlavaLlamaDecoder.forward`` returns: the LM loss L_ans (None without labels), logits
    (B, T, V), last-layer hidden states (B, T, D) and E_vl per sample (list of (v_b, D))."""

    loss: torch.Tensor | None
    logits: torch.Tensor
    hidden_states: torch.Tensor
    seg_embeddings: list[torch.Tensor]
    tag_loss: torch.Tensor | None = None  # noun_extraction: tag — BIO cross-entropy on the caption tokens


def phrase_means(hidden: torch.Tensor, is_seg: torch.Tensor, start: int) -> torch.Tensor:
    """(T, D) states, (T,) bool <SEG> flags → (n_seg, D): for each <SEG>, the mean state of the tokens
    between the previous <SEG> (or ``start``, where the answer begins) and it (zeros if none)."""
    seg_at = torch.nonzero(is_seg).flatten().tolist()
    rows, begin = [], start
    for pos in seg_at:
        span = hidden[begin:pos]  # empty when two <SEG> are adjacent
        rows.append(span.mean(0) if span.shape[0] else hidden.new_zeros(hidden.shape[-1]))
        begin = pos + 1
    return torch.stack(rows) if rows else hidden.new_zeros((0, hidden.shape[-1]))


class LlavaLlamaDecoder(PromptsMixin, GenerationMixin, HFFormatMixin, nn.Module, LanguageDecoder):
    """LLaVA-1.5-style LLaMA-family decoder: nouns with <SEG>, E_vl at each <SEG> (tiny by default).

    Parts: ``projector`` (W: Z_v → LM embeddings; transformers' ``LlavaMultiModalProjector`` or the
    paper's single linear layer), ``lm`` (any transformers causal LM of the LLaMA family) and
    ``tokenizer`` (with ``<image>`` and ``<SEG>`` added as special tokens, each checked to encode to
    exactly one id).

    Vision: the LLaVA vision tower is never run here. Z_v comes from the pipeline's
    ``vision_encoder``; the ``<image>`` placeholder of the prompt is expanded to as many tokens as
    Z_v has rows (L, read from the tensor, never hard-coded) and their embeddings are replaced by
    W·Z_v. A LLaVA checkpoint's own CLIP tower weights (``model.vision_tower.*``) are kept
    untouched in ``vision_tower_state`` and written back on save; the ``llava_clip`` vision encoder
    (``components/encoders/vision/llava_clip.py``) loads that tower from the same directory and
    gives Z_v as LLaVA's projector expects it (layer ``vision_feature_layer``, CLS dropped), so
    LLaVA-1.5 weights run with one CLIP pass and reproduce ``LlavaForConditionalGeneration``
    exactly (tested).

    Subtasks (``build_inputs``; paper Table III): ``description`` (describe the image; answer =
    the caption), ``nouns`` and ``grounding`` (the noun prompt + caption; answer = the phrases each
    followed by `` <SEG>``, comma separated), ``res`` (the referring-expression prompt).

    Methods beyond the interface, for the trainer:

    * ``build_inputs(task, caption, phrases, num_image_tokens)`` → {input_ids, labels} (lists;
      labels are -100 on the prompt and the image tokens); ``collate(samples)`` → padded
      LongTensors input_ids, attention_mask, labels (both from ``PromptsMixin``, ``prompts.py``);
    * ``forward(z_v, input_ids, attention_mask, labels)`` → ``LanguageForward`` (loss L_ans,
      logits, hidden states, E_vl per sample at its ``<SEG>`` tokens);
    * ``generate_ids``, ``describe``, ``tag_phrases`` (``GenerationMixin``, ``generation.py``);
      ``save_pretrained(dir)`` / ``from_pretrained(dir)`` in the Hugging Face LLaVA format
      (safetensors; ``HFFormatMixin``, ``hf_format.py``).

    Training options: ``freeze_lm`` (only W, the embeddings and lm_head learn) or ``lora_rank``
    (LoRA adapters, see ``lora.py``; ``save_pretrained`` folds them into the weights, so the saved
    directory is a plain LLaVA checkpoint).

    ``extract`` is the inference path (no gradients). E_vl is the hidden state *at* each ``<SEG>``
    token (the state that has read the noun and the ``<SEG>`` itself), the same in training and
    inference. Phrases the caption does not contain are dropped together with their embedding;
    the plural flag comes from ``phrases.is_plural``.
    """

    @dataclass
    class Config:
        source: str = "tiny"  # tiny (random LM of the dims below + shipped tiny tokenizer) | hf_dir | gguf | smollm2
        path: str = ""  # hf_dir: a LLaVA or causal-LM directory (HF format); gguf: a .gguf file
        tokenizer_path: str = ""  # another tokenizer directory (default: the model's own)
        projector_path: str = ""  # safetensors of the projector alone (linear_1.*, linear_2.*)
        vision_dim: int = 0  # C of Z_v; 0 = set by configure() when the pipeline is built
        projector: str = "linear"  # linear (paper eq. 10) | mlp (LLaVA-1.5: linear-GELU-linear); a loaded
                                   # LLaVA folder or projector file brings its own
        hidden_size: int = 64  # tiny: the random LM's geometry (LLaMA-7B: 4096, 32, 32, 11008, 32000)
        num_layers: int = 2
        num_heads: int = 4
        num_kv_heads: int = 0  # 0 = num_heads
        intermediate_size: int = 128
        vocab_size: int = 0  # 0 = the tokenizer's size; larger pads the embedding table
        max_positions: int = 2048
        seed: int = 0  # tiny: weights are initialised from this seed
        dtype: str = "float32"  # float32 | bfloat16 | float16
        max_new_tokens: int = 64
        noun_prompt: str = "Please help me extract semantic nouns of this sentence: {caption}"
        res_prompt: str = "Please help me extract each semantic noun from the sentence. The sentence is {caption}"
        description_prompt: str = "Please help me describe the image."
        chat_template: str = "auto"  # auto (the tokenizer's if it has one) | llava ("USER: … ASSISTANT:") | tokenizer
        gguf_cache: str = ""  # a folder for a dequantised HF-format copy of a GGUF model: later loads ~10x faster
        freeze_lm: bool = False  # freeze the LM's layers (embeddings + lm_head stay trainable for <SEG>)
        lora_rank: int = 0  # > 0: LoRA adapters of this rank on lora_targets; the LM's layers are frozen
        lora_alpha: float = 16.0
        lora_targets: str = "q_proj,v_proj"  # comma-separated names of the LM's linear layers
        copy_constrained: bool = True  # nouns/res answers may only copy caption spans (CopyConstraint)
        seg_readout: str = "hidden"  # hidden: E_vl = the last-layer state at <SEG> (the paper) | hidden+phrase:
                                     # plus the mean last-layer state of the phrase's own tokens (the answer
                                     # tokens since the previous <SEG>); helps small LMs trained from scratch
        noun_extraction: str = "generate"  # generate: the LM writes the answer (the paper) | tag: a BIO head on
                                           # the LM's caption states picks the phrases (span_tagger.py), the
                                           # LM then reads "phrase <SEG>, …" teacher-forced for E_vl

    def __init__(self, config: LlavaLlamaDecoder.Config) -> None:
        super().__init__()
        self.config = config
        self._check_config()
        self.dtype = _DTYPES[config.dtype]
        self.load_seconds = 0.0
        self.projector: nn.Module | None = None
        self.vision_dim = 0
        start = time.perf_counter()
        loaded = load_lm(config, self.dtype)
        self.tokenizer, self.lm = loaded.tokenizer, loaded.lm
        self.vision_tower_state = loaded.vision_tower_state  # a LLaVA checkpoint's CLIP tower, kept for saving
        self.vision_config = loaded.vision_config
        self.llava_settings = loaded.llava_settings
        if loaded.projector_kind:
            config.projector = loaded.projector_kind
        self.image_token_id, self.seg_token_id = add_gella_tokens(self.tokenizer)
        fit_embeddings(self.lm, self.tokenizer)
        self.span_tagger: SpanTagger | None = None
        if config.noun_extraction == "tag":
            self.span_tagger = build_span_tagger(config, self.embed_dim, self.dtype)
        if loaded.projector_state:
            self._set_projector(projector_in_dim(loaded.projector_state), loaded.projector_state, str(config.path))
        if config.projector_path:
            path = Path(config.projector_path)
            state = read_projector_file(path)
            config.projector = projector_kind(state)
            self._set_projector(projector_in_dim(state), state, str(path))
        if config.vision_dim:
            self.configure(config.vision_dim)
        if config.freeze_lm or config.lora_rank:
            self.lm.requires_grad_(False)
            self.lm.get_input_embeddings().requires_grad_(True)
            self.lm.get_output_embeddings().requires_grad_(True)
        if config.lora_rank:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + 2)
                targets = [t.strip() for t in config.lora_targets.split(",") if t.strip()]
                add_lora(self.lm, targets, config.lora_rank, config.lora_alpha)
        self.load_seconds = time.perf_counter() - start

    def _check_config(self) -> None:
        c = self.config
        if c.seg_readout not in SEG_READOUTS:
            raise ConfigError(f"unknown seg_readout {c.seg_readout!r}; one of {', '.join(SEG_READOUTS)}",
                              key="language_decoder.seg_readout")
        if c.noun_extraction not in NOUN_EXTRACTIONS:
            raise ConfigError(f"unknown noun_extraction {c.noun_extraction!r}; one of {', '.join(NOUN_EXTRACTIONS)}",
                              key="language_decoder.noun_extraction")
        if c.source not in SOURCES:
            raise ConfigError(f"unknown source {c.source!r}; one of {', '.join(SOURCES)}", key="language_decoder.source")
        if c.source in ("hf_dir", "gguf") and not c.path:
            raise ConfigError(f"source {c.source!r} needs a path", key="language_decoder.path")
        if c.projector not in PROJECTORS:
            raise ConfigError(f"projector must be 'mlp' or 'linear', not {c.projector!r}", key="language_decoder.projector")
        if c.lora_rank < 0:
            raise ConfigError("lora_rank must be 0 (no LoRA) or positive", key="language_decoder.lora_rank")
        if c.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}", key="language_decoder.dtype")
        if c.chat_template not in CHAT_TEMPLATES:
            raise ConfigError("chat_template must be auto, llava or tokenizer", key="language_decoder.chat_template")
        for name in ("noun_prompt", "res_prompt"):
            if "{caption}" not in getattr(c, name):
                raise ConfigError("the prompt must contain {caption}", key=f"language_decoder.{name}")

    def _set_projector(self, vision_dim: int, state: dict[str, torch.Tensor] | None = None, what: str = "") -> None:
        self.projector = build_projector(self.config.projector, vision_dim, self.embed_dim, self.llava_settings,
                                         self.dtype, state, what)
        self.vision_dim = vision_dim

    # ------------------------------------------------------------------ interface
    @property
    def embed_dim(self) -> int:
        return int(self.lm.config.hidden_size)

    def configure(self, vision_dim: int) -> None:
        """Size W for Z_v of width ``vision_dim``; a loaded projector must already have that width."""
        if self.projector is not None:
            if self.vision_dim != vision_dim:
                raise CompatibilityError(
                    f"the language decoder's projector takes {self.vision_dim}-d visual tokens (from its "
                    f"checkpoint) but the vision encoder gives {vision_dim}-d; use the matching vision "
                    "encoder or a checkpoint trained with it"
                )
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + 1)
            self._set_projector(vision_dim)

    @torch.no_grad()
    def extract(self, z_v: torch.Tensor, caption: str | None, task: str = "nouns") -> LanguageOutput:
        """Inference: nouns of ``caption`` (or of a generated description when None) with E_vl.

        ``task`` picks the prompt: ``nouns`` (panoptic narrative grounding) or ``res``."""
        z_v = self._check_z_v(z_v, batch=1)
        if caption is None:
            caption = self.describe(z_v)
        prompt = self.prompt_ids(task, caption, z_v.shape[1])
        if self.span_tagger is not None:
            answer = self.answer_ids(task, caption, self.tag_phrases(z_v, caption, task))[:-1]  # without EOS
        else:
            answer = self.generate_ids(z_v, prompt, copy_from=caption if self.config.copy_constrained else None)
        ids = torch.tensor([prompt + answer], device=z_v.device)
        e_vl = self.forward(z_v, ids, answer_start=len(prompt)).seg_embeddings[0]
        seg_at = [i for i, t in enumerate(answer) if t == self.seg_token_id]
        chunks, start = [], 0
        for pos in seg_at:
            chunks.append(clean_phrase(self.tokenizer.decode(answer[start:pos], skip_special_tokens=True)))
            start = pos + 1
        found = find_spans(caption, chunks)
        keep = [k for k, p in enumerate(found) if p is not None]
        phrases: tuple[NounPhrase, ...] = tuple(found[k] for k in keep)  # type: ignore[misc]
        rows = torch.tensor(keep, dtype=torch.long, device=e_vl.device)
        return LanguageOutput(
            text=self.tokenizer.decode(answer, skip_special_tokens=False).strip(),
            phrases=phrases,
            seg_embeddings=e_vl.index_select(0, rows),
            caption=Caption(caption, phrases),
        )

    # ------------------------------------------------------------------ the network
    def _check_z_v(self, z_v: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        if self.projector is None:
            raise CompatibilityError(
                "the language decoder has no projector yet: call configure(vision_dim) first (the pipeline does)"
            )
        if z_v.ndim != 3 or (batch is not None and z_v.shape[0] != batch) or z_v.shape[2] != self.vision_dim:
            want = f"({batch if batch is not None else 'B'}, L, {self.vision_dim})"
            raise InputError(f"z_v must be {want}; got {tuple(z_v.shape)}")
        return z_v

    def embed_inputs(self, z_v: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings with H_v = W·Z_v in place of the ``<image>`` tokens (row b gets z_v[b])."""
        z_v = self._check_z_v(z_v, batch=input_ids.shape[0])
        image = input_ids == self.image_token_id
        counts = image.sum(dim=1)
        if bool((counts != z_v.shape[1]).any()):
            raise CompatibilityError(
                f"the token sequences hold {counts.tolist()} <image> tokens but Z_v has {z_v.shape[1]} rows; "
                "build the inputs with num_image_tokens=z_v.shape[1]"
            )
        embeds = self.lm.get_input_embeddings()(input_ids)
        h_v = self.projector(z_v.to(embeds.dtype))  # type: ignore[misc]
        return embeds.masked_scatter(image.unsqueeze(-1), h_v.reshape(-1, h_v.shape[-1]))

    def forward(
        self,
        z_v: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        answer_start: int | None = None,
        tag_labels: torch.Tensor | None = None,
    ) -> LanguageForward:
        """Teacher-forced pass: L_ans (token cross-entropy on the labels), hidden states and E_vl —
        read at every ``<SEG>`` id in each row, in order (``seg_readout``). The answer starts at
        the first labelled token, or at ``answer_start`` when there are no labels."""
        embeds = self.embed_inputs(z_v, input_ids)
        out = self.lm(
            inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, output_hidden_states=True, use_cache=False
        )
        hidden = out.hidden_states[-1]
        seg = input_ids == self.seg_token_id
        e_vl = [hidden[b][seg[b]] for b in range(hidden.shape[0])]
        if self.config.seg_readout == "hidden+phrase":
            if labels is not None:
                starts = [int(torch.nonzero(row != IGNORE_INDEX)[0]) if bool((row != IGNORE_INDEX).any()) else row.numel()
                          for row in labels]
            elif answer_start is not None:
                starts = [answer_start] * hidden.shape[0]
            else:
                raise InputError("seg_readout hidden+phrase needs labels or answer_start to find the phrases")
            e_vl = [e + phrase_means(hidden[b], seg[b], starts[b]) for b, e in enumerate(e_vl)]
        tag_loss = None
        if self.span_tagger is not None and tag_labels is not None:
            tag_logits = self.span_tagger(hidden)
            if bool((tag_labels != IGNORE_INDEX).any()):
                tag_loss = nn.functional.cross_entropy(tag_logits.flatten(0, 1).float(), tag_labels.flatten(),
                                                       ignore_index=IGNORE_INDEX)
            else:  # no caption task in the batch: keep the head in the graph (DDP) at zero cost
                tag_loss = tag_logits.sum() * 0.0
        return LanguageForward(out.loss, out.logits, hidden, e_vl, tag_loss)


__all__ = ["NOUN_EXTRACTIONS", "SEG_READOUTS", "LanguageForward", "LlavaLlamaDecoder", "phrase_means"]
