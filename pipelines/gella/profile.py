"""Parameters and FLOPs (``esgkit profile CONFIG``): parameters and FLOPs of each part of a GELLA config at the paper's
input sizes (Tables XI / XII), counted with ``torch.utils.flop_counter.FlopCounterMode``.

Convention: torch's counter counts **2 FLOPs per multiply-add** (matmuls, convolutions, attention).
Both figures are printed: GFLOPs (torch) and G multiply-adds (= GFLOPs / 2). Element-wise ops,
norms, softmax and grid sampling are not counted by torch (nor, usually, by papers).

Every part is built on the **meta device** (no memory, no weights) and run on meta tensors, so a
7B language model costs nothing to count. The LLM is counted for one forward pass over
``tokens`` positions (image tokens + prompt + caption; default 900 = 576 CLIP-336 tokens + 324
text tokens), including the projection W of Z_v and the LM head. ``nn.MultiheadAttention``'s fused
fast path is switched off while counting (the counter would not see it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported lazily so that `esgkit --help` stays fast
    import torch.nn as nn

# Paper figures (Tables XI and XII, LLaMA-7B language decoder).
PAPER_PARAMS_M = {"image encoder": 300.0, "mask encoder": 3.5, "mask decoder": 21.0}
PAPER_GFLOPS = {"image+mask encoders": 204.0, "mask decoder": 113.0, "LLM": 11987.0, "all": 12304.0}
LLAMA_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}


@dataclass
class Row:
    part: str
    params_m: float
    gflops: float          # torch convention: 2 FLOPs per multiply-add
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    note: str = ""

    @property
    def gmacs(self) -> float:
        return self.gflops / 2


def count_params(*modules: nn.Module | None) -> int:
    seen: set[int] = set()
    total = 0
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def count_flops(fn: Any) -> int:
    """FLOPs (2 per multiply-add) of ``fn()``, with the MHA fast path off so every matmul is seen."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def _llm_module(decoder: Any) -> tuple[nn.Module | None, int | None]:
    """The causal LM inside a language decoder built on meta, and its hidden size, if it exposes one."""
    import torch.nn as nn

    for attr in ("language_model", "lm", "model"):
        lm = getattr(decoder, attr, None)
        if isinstance(lm, nn.Module) and hasattr(lm, "config") and hasattr(lm.config, "hidden_size"):
            return lm, int(lm.config.hidden_size)
    return None, None


def build_llama_7b() -> nn.Module:
    """LLaMA-7B geometry (transformers LlamaConfig) on the meta device, for counting only."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        return LlamaForCausalLM(LlamaConfig(**LLAMA_7B)).eval()


def profile_config(config: Any, tokens: int = 900, llm: str = "auto") -> list[Row]:
    """Rows for a GELLA config (a path, a shipped config name or a loaded config).

    ``llm``: ``auto`` uses the config's language decoder when it can be built on the meta device and
    exposes its LM, else LLaMA-7B geometry; ``llama7b`` always uses LLaMA-7B geometry.
    """
    import torch
    import torch.nn as nn

    from esgkit.core import get_registry, load_config
    from esgkit.core.errors import CompatibilityError, ConfigError
    from esgkit.core.schema import to_container

    cfg = to_container(load_config(config) if isinstance(config, str) else config)
    if str(dict(cfg.get("pipeline", {})).get("name")) != "gella":
        raise ConfigError("esgkit profile counts GELLA configs (pipeline.name: gella)", key="pipeline.name")
    registry = get_registry()
    mask_size = int(cfg["pipeline"].get("mask_size", 128))

    def build(role: str) -> Any:
        with torch.device("meta"):
            return registry.build(role, cfg[role], key=role)

    vis, enc, fuser, dec = (build(r) for r in ("vision_encoder", "colormap_encoder", "fuser", "mask_decoder"))
    if getattr(dec, "queries_are_entities", False):
        raise CompatibilityError(f"esgkit profile counts the colormap path of Tables XI/XII; mask_decoder "
                                 f"{type(dec).__name__} reads Z_v and the entity masks instead (Table XX)")
    with torch.device("meta"):
        fuser.configure(vis.embed_dim, tuple(enc.out_channels))
        dec.configure(tuple(enc.out_channels))
    for m in (vis, enc, fuser, dec):
        m.eval()
    s = vis.image_size
    meta = {"device": "meta"}
    pixels = torch.zeros(1, 3, s, s, **meta)
    n_in = 3 if getattr(enc, "input_kind", "colormap") == "colormap" else 1
    mask_in = torch.zeros(1, n_in, mask_size, mask_size, **meta)
    with torch.no_grad():
        z_v = vis(pixels)
        pyramid = enc(mask_in)
        fused = fuser(z_v, vis.grid_size, pyramid)
    f_vis = count_flops(lambda: vis(pixels))
    f_enc = count_flops(lambda: enc(mask_in))
    f_fuse = count_flops(lambda: fuser(z_v, vis.grid_size, pyramid))
    f_dec = count_flops(lambda: dec(fused))

    # --- language model
    lm, hidden, note, projection = None, None, "", None
    if llm == "auto":
        try:
            lang = build("language_decoder")
            with torch.device("meta"):
                lang.configure(vis.embed_dim)
            lm, hidden = _llm_module(lang)
            projection = getattr(lang, "projector", None)
        except Exception as exc:  # a decoder that cannot live on meta: fall back, and say so
            note = f"config's language decoder not countable on meta ({type(exc).__name__}); "
    if lm is None:
        lm, hidden = build_llama_7b(), LLAMA_7B["hidden_size"]
        note += "LLaMA-7B geometry (transformers LlamaConfig)"
    else:
        note += f"{type(lm).__name__} from the config"
    if not isinstance(projection, nn.Module):
        with torch.device("meta"):
            projection = nn.Linear(vis.embed_dim, hidden)
    embeds = torch.zeros(1, tokens, hidden, **meta)
    # A ready 4-D additive mask: transformers' own mask building reads tensor values (.item()), which
    # meta tensors do not have. The counter counts the full attention matrix either way.
    mask4d = torch.zeros(1, 1, tokens, tokens, **meta)
    lm.eval()
    f_lm = count_flops(lambda: lm(inputs_embeds=embeds, attention_mask=mask4d, use_cache=False)) + count_flops(
        lambda: projection(z_v))
    p_lm = count_params(lm, projection)

    p_vis, p_enc, p_fuse, p_dec = (count_params(m) for m in (vis, enc, fuser, dec))
    enc_note = f"{getattr(enc.config, 'backbone', type(enc).__name__)} features_only at {mask_size}²"
    try:  # the paper's 3.5M for MobileNetV2 is the whole ImageNet model, classifier head included
        import timm

        with torch.device("meta"):
            whole = timm.create_model(enc.config.backbone, pretrained=False)
        enc_note += f" (whole timm model with its classifier head: {count_params(whole) / 1e6:.1f}M)"
    except Exception:
        pass
    rows = [
        Row("image encoder", p_vis / 1e6, f_vis / 1e9, PAPER_PARAMS_M["image encoder"], None,
            f"{type(vis).__name__} {getattr(vis.config, 'arch', '') or 'custom'} at {s}²"),
        Row("mask encoder", p_enc / 1e6, f_enc / 1e9, PAPER_PARAMS_M["mask encoder"], None,
            enc_note),
        Row("fuser", p_fuse / 1e6, f_fuse / 1e9, None, None, f"{type(fuser).__name__}; counted in image+mask encoders"),
        Row("image+mask encoders", (p_vis + p_enc + p_fuse) / 1e6, (f_vis + f_enc + f_fuse) / 1e9, None,
            PAPER_GFLOPS["image+mask encoders"], "image encoder + mask encoder + fuser"),
        Row("mask decoder", p_dec / 1e6, f_dec / 1e9, PAPER_PARAMS_M["mask decoder"], PAPER_GFLOPS["mask decoder"],
            f"{type(dec).__name__}, {dec.config.num_queries} queries"),
        Row("LLM", p_lm / 1e6, f_lm / 1e9, None, PAPER_GFLOPS["LLM"], f"{note}, {tokens} tokens"),
    ]
    total_p = p_vis + p_enc + p_fuse + p_dec + p_lm
    total_f = f_vis + f_enc + f_fuse + f_dec + f_lm
    rows.append(Row("all", total_p / 1e6, total_f / 1e9, None, PAPER_GFLOPS["all"], "associator not counted (tiny)"))
    # The paper's Table XII sums an LLM figure in FLOPs with encoder/decoder figures that match
    # multiply-adds; this row does the same so the totals compare like for like.
    mixed = f_lm + (f_vis + f_enc + f_fuse + f_dec) / 2
    rows.append(Row("all (paper's mix)", total_p / 1e6, mixed / 1e9, None, PAPER_GFLOPS["all"],
                    "LLM in FLOPs + encoders and mask decoder in multiply-adds (compare r(FLOPs))"))
    return rows


def _ratio(ours: float, paper: float | None) -> str:
    return f"{ours / paper:5.2f}" if paper else "    -"


def _num(x: float) -> str:
    """One decimal for big figures, three significant digits for the tiny presets' small ones."""
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def format_rows(rows: list[Row], reference: str = "Tables XI, XII") -> str:
    head = (f"{'part':21s} {'params M':>10s} {'paper':>7s} {'ratio':>5s}  {'GFLOPs':>9s} {'GMACs':>9s} "
            f"{'paper':>7s} {'r(FLOPs)':>8s} {'r(MACs)':>7s}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        pp = f"{r.paper_params_m:7.1f}" if r.paper_params_m else "      -"
        pf = f"{r.paper_gflops:7.0f}" if r.paper_gflops else "      -"
        lines.append(f"{r.part:21s} {_num(r.params_m):>10s} {pp} {_ratio(r.params_m, r.paper_params_m)}  "
                     f"{_num(r.gflops):>9s} {_num(r.gmacs):>9s} {pf} {_ratio(r.gflops, r.paper_gflops):>8s} "
                     f"{_ratio(r.gmacs, r.paper_gflops):>7s}  {r.note}")
    lines.append("Convention: GFLOPs = torch FlopCounterMode (2 FLOPs per multiply-add); GMACs = GFLOPs / 2. "
                 f"ratio = ours / paper ({reference}).")
    return "\n".join(lines)


__all__ = ["LLAMA_7B", "PAPER_GFLOPS", "PAPER_PARAMS_M", "Row", "count_flops", "count_params", "format_rows",
           "profile_config"]
