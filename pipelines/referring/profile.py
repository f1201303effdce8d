"""Parameters and FLOPs of a referring config's parts (``esgkit profile pbrec_mt_paper``, ``cmpc_paper``,
``uniqrnet_paper``): the referrer's visual backbone (its ``backbone`` module) at the referrer's input size,
the text encoder over ``tokens`` tokens, and the rest of the referrer (projections, vision-language fusion,
heads: its whole forward pass less the backbone's), counted with ``torch.utils.flop_counter`` (2 FLOPs per
multiply-add, as ``esgkit profile`` counts GELLA). A referrer is profiled through ``config.image_size``,
``forward(images, text)`` and, where it has one, its ``backbone`` module (without one, a single
"referrer" row). The parts are built for real (random weights where the config names
none) and run once on zeros: BERT's attention masks cannot run on the meta device."""

from __future__ import annotations

from typing import Any

from esgkit.pipelines.gella.profile import Row, count_flops, count_params


def profile_referring(config: Any, tokens: int = 20) -> list[Row]:
    """Rows (visual backbone, text encoder, fusion + heads, all) for a referring config (a path, a
    shipped name or a loaded config), one image and one expression of ``tokens`` tokens."""
    import torch

    from esgkit.core import TextFeatures, get_registry, load_config  # noqa: F401 (annotation)
    from esgkit.core.schema import to_container

    cfg = to_container(load_config(config) if isinstance(config, str) else config)
    registry = get_registry()
    text = registry.build("text_encoder", cfg["text_encoder"], key="text_encoder").eval()
    referrer = registry.build("referrer", cfg["referrer"], key="referrer")
    referrer.configure(text.embed_dim)
    referrer.eval()
    size = int(referrer.config.image_size)
    images = torch.zeros(1, 3, size, size)
    phrase = " ".join(["word"] * max(1, tokens - 2))  # [CLS] … [SEP]
    body = getattr(referrer, "backbone", None)  # a referrer without one is counted as a whole
    with torch.no_grad():
        fuse_text: TextFeatures = text.encode([phrase])
        backbone_flops = count_flops(lambda: body(images)) if body is not None else 0
        referrer_flops = count_flops(lambda: referrer(images, fuse_text))
    t = fuse_text.tokens.shape[1]
    backbone = count_params(body) if body is not None else 0
    grid = "×".join(str(g) for g in referrer.grid) if hasattr(referrer, "grid") else ""
    rows = [Row("visual backbone", backbone / 1e6, backbone_flops / 1e9,
                note=f"{getattr(referrer.config, 'backbone', '')}, {size}²" + (f", grid {grid}" if grid else ""))] \
        if body is not None else []
    rows += [
        Row("text encoder", count_params(text) / 1e6, count_flops(lambda: text.encode([phrase])) / 1e9,
            note=f"{type(text).__name__}, {t} tokens"),
        Row("fusion + heads" if body is not None else "referrer", (count_params(referrer) - backbone) / 1e6,
            (referrer_flops - backbone_flops) / 1e9, note=f"{type(referrer).__name__}, {t} tokens"),
    ]
    rows.append(Row("all", sum(r.params_m for r in rows), sum(r.gflops for r in rows)))
    return rows


__all__ = ["profile_referring"]
