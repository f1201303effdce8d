"""QRNet (CVPR 2022) and UniQRNet (seed 001): a visual backbone modulated by the expression, and a
joint box + mask head whose mask supervision also reaches the backbone's intermediate stages.

QRNet — a hierarchical timm backbone (Swin-S in the paper) with Query-aware Dynamic Attention
(``layers.query_attention``) after every stage, so each stage sees features already gated by the
sentence; a neck (1×1 laterals to ``dim``, top-down sum, then bottom-up "soft" downsampling: QD-ATT
and a 2×2 mean pool per step) of which only the stride-32 and stride-64 maps are kept as visual tokens;
a transformer fusion encoder over [REG] + text + visual tokens with learned positions added to the
tokens (started from sine encodings) and a learned embedding per visual scale; [REG] → MLP(dim, dim, 4)
→ σ → the box (centre and size in the padded square; trained with L1 + GIoU).

UniQRNet — ``mask_head``: the fused stride-32 tokens upsampled through the neck's stride-16 … maps to
``mask_stride``, a mask embedding per pixel dotted with a kernel decoded from [REG] → mask logits;
``intermediate_supervision``: a 1×1 head on every backbone stage's QD-ATT output, trained on the
referred mask too, so the pixel-level signal guides the intermediate layers directly. The seed does not
give its loss-balance formula: ``loss_balance: uncertainty`` (the default, a design choice) learns one
log-variance per task (Kendall et al. 2018: Σ_t e^(−s_t)·L_t + s_t); ``fixed`` uses the task's
``box_weight`` / ``mask_weight``. The s_t live here, in the model, so the optimiser trains them.

Switches: ``qd_att`` (off: a plain backbone and a plain mean-pool neck), ``box_head``, ``mask_head``
(off: QRNet — the mask is the entity proposal whose box overlaps the predicted box best, so a segmenter
is needed), ``intermediate_supervision``, ``loss_balance``. The sentence vector reaches QD-ATT through
a linear projection to ``dim`` (QRNet feeds BERT's 768-d [CLS] directly: the same family of maps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.core import EntityMasks, Referral, Referrer, TextFeatures
from esgkit.core.errors import ConfigError, InputError
from esgkit.layers.backbones import StagedBackbone
from esgkit.layers.geometry import imagenet_input, logits_to_image, mask_boxes, valid_cells
from esgkit.layers.overlap import box_iou_matrix
from esgkit.layers.positions import sine_1d, sine_2d
from esgkit.layers.query_attention import QueryDynamicAttention
from esgkit.layers.transformer import PositionalEncoder

BALANCES = ("uncertainty", "fixed")
TOKEN_STRIDES = (32, 64)  # QRNet's: the neck levels the fusion encoder sees (20×20 + 10×10 tokens at 640²)


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them."""
    parts: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        parts += [nn.Linear(a, b)] + ([nn.ReLU()] if k < len(dims) - 2 else [])
    return nn.Sequential(*parts)


def conv_block(in_dim: int, out_dim: int) -> nn.Sequential:
    """3×3 conv, GroupNorm, ReLU: one step of the mask decoder."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, 3, padding=1, bias=False), nn.GroupNorm(min(8, out_dim), out_dim),
                         nn.ReLU())


class QRNetReferrer(nn.Module, Referrer):
    """QRNet / UniQRNet: an expression-modulated backbone, a fusion encoder, a box and a mask head."""

    @dataclass
    class Config:
        backbone: str = "swin_small_patch4_window7_224"  # any timm model with stem + stages (Swin, ConvNeXt)
        backbone_options: dict[str, Any] = field(default_factory=dict)  # e.g. {img_size: 640, window_size: 10}
        backbone_checkpoint: str = ""  # the backbone's published ImageNet weights (timm's file) or esgkit's
        image_size: int = 640           # input side: aspect kept, padded to a square; a multiple of 64
        dim: int = 256
        layers: int = 6
        heads: int = 8
        ffn_dim: int = 2048
        dropout: float = 0.1
        max_text_tokens: int = 40       # learned text positions (QRNet: 20; RefCOCOg 40)
        token_strides: tuple[int, ...] = TOKEN_STRIDES  # the neck levels the fusion encoder reads (two, ×2 apart)
        qd_att: bool = True             # off: a plain backbone and neck (no expression modulation)
        qd_rank: int = 30               # k of the dynamic layers' factorisation
        qd_reduction: int = 16          # the channel gate's MLP: C → C/reduction → C
        box_head: bool = True
        mask_head: bool = True          # UniQRNet's multi-task head; off = QRNet (masks from entity proposals)
        intermediate_supervision: bool = True  # mask logits from every backbone stage, trained too
        loss_balance: str = "uncertainty"       # uncertainty (learned log-variances) | fixed (train weights)
        mask_stride: int = 8            # the mask head's output stride (one of the backbone's strides ≤ 16)
        box_source: str = "head"        # the referral's box: head ([REG] → MLP) | mask (the mask's bounding box)
        threshold: float = 0.5          # mask = σ(logits) > threshold

    def __init__(self, config: QRNetReferrer.Config) -> None:
        super().__init__()
        c = config
        c.token_strides = tuple(c.token_strides)
        if len(c.token_strides) != 2 or c.token_strides[1] != 2 * c.token_strides[0]:
            raise ConfigError(f"token_strides {list(c.token_strides)}: expected two neck strides, the second twice "
                              "the first (QRNet: [32, 64])", key="referrer.token_strides")
        if c.image_size % max(c.token_strides):
            raise ConfigError(f"image_size {c.image_size} must be a multiple of {max(c.token_strides)} (the coarsest "
                              "token grid)", key="referrer.image_size")
        if c.dim % c.heads or c.dim % 4:
            raise ConfigError(f"dim {c.dim} must be divisible by heads {c.heads} and by 4 (2-D sine positions)",
                              key="referrer.dim")
        if not (c.box_head or c.mask_head):
            raise ConfigError("box_head and mask_head are both off: nothing would be predicted",
                              key="referrer.box_head")
        if c.loss_balance not in BALANCES:
            raise ConfigError(f"loss_balance {c.loss_balance!r}: expected one of {', '.join(BALANCES)}",
                              key="referrer.loss_balance")
        if c.box_source not in ("head", "mask") or (c.box_source == "mask" and not c.mask_head):
            raise ConfigError(f"box_source {c.box_source!r}: expected head, or mask with mask_head on",
                              key="referrer.box_source")
        if not 0 < c.threshold < 1 or c.max_text_tokens < 1:
            raise ConfigError(f"threshold {c.threshold} must be in (0, 1), max_text_tokens {c.max_text_tokens} ≥ 1",
                              key="referrer.threshold")
        self.config = c
        self.backbone = StagedBackbone(c.backbone, c.backbone_options)
        if c.backbone_checkpoint:  # a start for training; a trained referrer's own weights replace it
            self.backbone.load(c.backbone_checkpoint, f"referrer.backbone_checkpoint ({c.backbone})")
        strides = self.backbone.reductions
        if strides[-1] != 32 or any(b != 2 * a for a, b in zip(strides[:-1], strides[1:])):
            raise ConfigError(f"backbone {c.backbone!r} has stage strides {strides}; QRNet's neck needs stages "
                              "halving down to stride 32 (…, 8, 16, 32)", key="referrer.backbone")
        # the neck's bottom-up levels have strides 2·strides[0] … 2·strides[-1]
        levels = [2 * s for s in strides]
        if c.token_strides[0] not in levels[:-1]:
            raise ConfigError(f"token_strides {list(c.token_strides)}: the neck's levels have strides {levels}",
                              key="referrer.token_strides")
        if c.mask_stride not in strides or c.mask_stride > c.token_strides[0]:
            raise ConfigError(f"mask_stride {c.mask_stride}: expected one of the backbone's strides {strides} up to "
                              f"the finest token stride {c.token_strides[0]}", key="referrer.mask_stride")
        n = len(strides)
        # the backbone stage at the finer token stride: the neck's bottom-up map of that stride is its
        # (stage − 1)-th (they start at 2·strides[0]), and the mask head upsamples from that stage down
        self._token_stage = strides.index(c.token_strides[0])
        # QD-ATT needs the sentence width: modules that depend on the text encoder are made in configure()
        self.stage_gates: nn.ModuleList | None = None
        self.neck_gates: nn.ModuleList | None = None
        self.mu_proj: nn.Module = nn.Identity()
        self.text_proj: nn.Module = nn.Identity()
        self.laterals = nn.ModuleList(nn.Conv2d(ch, c.dim, 1) for ch in self.backbone.channels)
        side = c.image_size
        self.token_grids = [(side // s, side // s) for s in c.token_strides]
        self.reg_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        # learned positions (QRNet's), started from sine encodings (1-D for the text, 2-D per visual scale)
        # so the box head knows where a token is from the first step: short CPU schedules need it
        self.positions = nn.Parameter(torch.cat([torch.zeros(1, c.dim), sine_1d(c.max_text_tokens, c.dim),
                                                 *(sine_2d(h, w, c.dim) for h, w in self.token_grids)])[None])
        self.scale_embed = nn.Parameter(torch.zeros(len(c.token_strides), c.dim))
        self.encoder = PositionalEncoder(c.dim, c.heads, c.ffn_dim, c.layers, c.dropout)
        self.box = mlp([c.dim, c.dim, c.dim, 4]) if c.box_head else None
        if c.mask_head:
            steps = self._token_stage - strides.index(c.mask_stride)  # token stride → … → mask_stride
            self.mask_decoder = nn.ModuleList(conv_block(c.dim, c.dim) for _ in range(steps))
            self.mask_embed = nn.Conv2d(c.dim, c.dim, 1)
            self.mask_kernel = mlp([c.dim, c.dim, c.dim + 1])  # a kernel and a bias from [REG]
        self.stage_heads = nn.ModuleList(nn.Conv2d(ch, 1, 1) for ch in self.backbone.channels) \
            if c.intermediate_supervision else None
        # one log-variance per task (box, mask), trained with the rest when balancing two tasks by uncertainty
        two_tasks = c.box_head and (c.mask_head or c.intermediate_supervision)
        self.log_vars = nn.Parameter(torch.zeros(2)) if c.loss_balance == "uncertainty" and two_tasks else None
        self._levels = n

    def configure(self, text_dim: int) -> None:
        c = self.config
        self.text_proj = nn.Linear(text_dim, c.dim)
        if c.qd_att:
            self.mu_proj = nn.Linear(text_dim, c.dim)
            gate = lambda ch: QueryDynamicAttention(ch, c.dim, c.qd_reduction, c.qd_rank)  # noqa: E731
            self.stage_gates = nn.ModuleList(gate(ch) for ch in self.backbone.channels)
            self.neck_gates = nn.ModuleList(gate(c.dim) for _ in range(self._levels))

    @property
    def needs_proposals(self) -> bool:  # type: ignore[override]
        """QRNet without its mask head takes the mask from the segmenter's entity its box overlaps best."""
        return not self.config.mask_head

    # ------------------------------------------------------------------ network
    def preprocess(self, image: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
        """uint8 (H, W, 3) → normalised (3, S, S) (aspect kept, padded bottom/right) and the (h, w)
        of the image inside it."""
        return imagenet_input(image, self.config.image_size)

    def valid_tokens(self, sizes: list[tuple[int, int]]) -> Tensor:
        """bool (B, visual tokens): the tokens that hold some of the image."""
        return torch.cat([valid_cells(sizes, s, g) for s, g in zip(self.config.token_strides, self.token_grids)], 1)

    def visual(self, images: Tensor, mu: Tensor | None) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """(B, 3, S, S) and the projected sentence μ (B, dim) → (the backbone's stages after QD-ATT, the
        neck's top-down maps p at strides 4..32, its token maps n at ``token_strides``). The bottom-up
        path: n_0 = p_0, n_k = p_k + pool(QD(n_(k−1))), one more pooled step past the last level."""
        stage_gates, neck_gates = (self.stage_gates, self.neck_gates) if mu is not None else (None, None)
        stages = self.backbone(images, (lambda k, f: stage_gates[k](f, mu)) if stage_gates is not None else None)
        lateral = [conv(f) for conv, f in zip(self.laterals, stages)]
        top_down = [lateral[-1]]
        for f in reversed(lateral[:-1]):
            top_down.insert(0, f + F.interpolate(top_down[0], size=f.shape[-2:], mode="nearest"))
        down, bottom_up = top_down[0], []
        for k in range(1, self._levels + 1):
            gated = neck_gates[k - 1](down, mu) if neck_gates is not None else down
            down = F.avg_pool2d(gated, 2) + (top_down[k] if k < self._levels else 0)
            bottom_up.append(down)
        return stages, top_down, bottom_up[self._token_stage - 1: self._token_stage + 1]

    def mu(self, text: TextFeatures) -> Tensor | None:
        """The sentence vector QD-ATT is conditioned on (None with ``qd_att`` off)."""
        return self.mu_proj(text.sentence) if self.config.qd_att else None

    def fuse(self, stages: list[Tensor], top_down: list[Tensor], token_maps: list[Tensor], text: TextFeatures,
             valid: Tensor | None = None) -> dict[str, Any]:
        """The fusion encoder over [REG] + text + visual tokens and the heads → {"box": (B, 4) σ(cx, cy, w, h)
        in the padded square or None, "mask": (B, h, w) logits at ``mask_stride`` or None, "stages":
        [(B, h_k, w_k)] the intermediate mask logits (empty without intermediate supervision)}."""
        c = self.config
        b = token_maps[0].shape[0]
        words = self.text_proj(text.tokens)
        t = words.shape[1]
        if t > c.max_text_tokens:
            raise InputError(f"{t} text tokens but referrer.max_text_tokens is {c.max_text_tokens}: lower the text "
                             "encoder's max_tokens or raise max_text_tokens")
        visual = torch.cat([m.flatten(2).transpose(1, 2) + self.scale_embed[k] for k, m in enumerate(token_maps)], 1)
        n_visual = visual.shape[1]
        x = torch.cat([self.reg_token.expand(b, -1, -1), words, visual], 1)
        pos = torch.cat([self.positions[:, : 1 + t], self.positions[:, 1 + c.max_text_tokens:]], 1).expand(b, -1, -1)
        visual_pad = torch.zeros(b, n_visual, dtype=torch.bool, device=x.device) if valid is None else ~valid
        reg_pad = torch.zeros(b, 1, dtype=torch.bool, device=x.device)
        # positions enter the tokens (ViT-style), not only the queries and keys: attention then carries
        # where a token is into [REG], which the box head reads
        out = self.encoder(x + pos, torch.zeros_like(pos), torch.cat([reg_pad, ~text.mask, visual_pad], 1))
        reg, fused = out[:, 0], out[:, 1 + t:]
        result: dict[str, Any] = {"box": self.box(reg).sigmoid() if self.box is not None else None, "mask": None,
                                  "stages": [head(f).squeeze(1) for head, f in zip(self.stage_heads, stages)]
                                  if self.stage_heads is not None else []}
        if c.mask_head:
            h, w = self.token_grids[0]
            feat = fused[:, : h * w].transpose(1, 2).reshape(b, c.dim, h, w)
            strides = self.backbone.reductions
            for step, k in zip(self.mask_decoder, range(self._token_stage - 1, strides.index(c.mask_stride) - 1, -1)):
                feat = step(F.interpolate(feat, size=top_down[k].shape[-2:], mode="bilinear", align_corners=False)
                            + top_down[k])
            kernel = self.mask_kernel(reg)
            embed = self.mask_embed(feat)
            result["mask"] = torch.einsum("bchw,bc->bhw", embed, kernel[:, :-1]) + kernel[:, -1, None, None]
        return result

    def forward(self, images: Tensor, text: TextFeatures, valid: Tensor | None = None) -> dict[str, Any]:
        return self.fuse(*self.visual(images, self.mu(text)), text, valid)

    def balance(self, losses: dict[str, Tensor], weights: dict[str, float]) -> dict[str, Tensor]:
        """The box and mask losses ({"box", "mask"}, either may be absent) weighted as ``loss_balance``
        says: e^(−s_t)·L_t + s_t with the learned s_t, or weights[t]·L_t. One task alone is not weighted."""
        if len(losses) < 2:
            return dict(losses)
        if self.log_vars is None:
            return {k: weights[k] * v for k, v in losses.items()}
        return {k: torch.exp(-self.log_vars[i]) * losses[k] + self.log_vars[i] for i, k in enumerate(("box", "mask"))}

    # ------------------------------------------------------------------ inference
    def refer(self, image: np.ndarray, text: TextFeatures, proposals: EntityMasks | None = None) -> list[Referral]:
        """The box from [REG] (with ``box_head`` off or ``box_source: mask``, the mask's bounding box); the
        mask σ(logits) > threshold (with ``mask_head`` off, the proposal whose box overlaps the predicted box
        best)."""
        c = self.config
        if not c.mask_head:
            if proposals is None:
                raise InputError("qrnet without its mask head takes masks from entity proposals: give a segmenter "
                                 "(segmenter.name=cropformer, sam, ground_truth …) and pipeline.proposals=true")
            proposals.check_image_size(image.shape[0], image.shape[1], "entity proposals")
        device = self.reg_token.device
        x, size = self.preprocess(image)
        n = text.tokens.shape[0]
        with torch.no_grad():
            stages, top_down, tokens = self.visual(x[None].to(device).expand(n, -1, -1, -1), self.mu(text))
            out = self.fuse(stages, top_down, tokens, text, self.valid_tokens([size]).to(device).expand(n, -1))
        height, width = image.shape[:2]
        scale = c.image_size / max(height, width)
        boxes = probs = None
        if out["box"] is not None:
            cx, cy, bw, bh = (out["box"].cpu().double() * c.image_size / scale).unbind(1)
            x0, y0 = (cx - bw / 2).clamp(0, width), (cy - bh / 2).clamp(0, height)
            x1, y1 = (cx + bw / 2).clamp(0, width), (cy + bh / 2).clamp(0, height)
            boxes = torch.stack([x0, y0, x1 - x0, y1 - y0], 1).numpy()
        if out["mask"] is not None:
            probs = logits_to_image(out["mask"], c.image_size, size, (height, width)).sigmoid().cpu()
        result = []
        for k in range(n):
            entity = None
            if probs is not None:
                mask = (probs[k] > c.threshold).numpy()
                score = float(probs[k][torch.from_numpy(mask)].mean()) if mask.any() else float(probs[k].max())
            else:
                mask, score, entity = self._best_overlap(boxes[k], proposals, image.shape[:2])  # type: ignore[index,arg-type]
            box = boxes[k] if boxes is not None and c.box_source == "head" else mask_boxes(mask[None])[0]
            result.append(Referral(tuple(float(v) for v in box), mask, score, None, entity))  # type: ignore[arg-type]
        return result

    @staticmethod
    def _best_overlap(box: np.ndarray, proposals: EntityMasks,
                      shape: tuple[int, int]) -> tuple[np.ndarray, float, int | None]:
        """(mask, box IoU, entity id) of the proposal whose bounding box overlaps ``box`` best (an empty
        mask, 0 and None when there is none)."""
        if len(proposals) == 0:
            return np.zeros(shape, bool), 0.0, None
        iou = box_iou_matrix(np.concatenate([box[None], mask_boxes(proposals.masks)]))[0, 1:]
        best = int(iou.argmax())
        return proposals.masks[best].copy(), float(iou[best]), int(proposals.ids[best])


__all__ = ["BALANCES", "QRNetReferrer", "TOKEN_STRIDES"]
